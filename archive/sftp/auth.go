package sftp

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// keySet is what Storage logs in with.
type keySet struct {
	signers []ssh.Signer
	names   []string // for messages: files, and "ssh-agent"
	agent   net.Conn
}

func (k *keySet) close() {
	if k.agent != nil {
		k.agent.Close()
	}
}

// keys loads the identity files, then the agent's keys. A file named in the
// Config must be usable; of the defaults, those that are not are skipped.
func (s *Storage) keys() (*keySet, error) {
	k := &keySet{}
	files, explicit := s.cfg.IdentityFiles, true
	if len(files) == 0 {
		files, explicit = DefaultIdentityFiles, false
	}
	var skipped []string
	for _, name := range files {
		file, err := expandHome(name)
		if err != nil {
			return nil, &connError{msg: fmt.Sprintf("sftp %s: identity %v", s.addr, err)}
		}
		b, err := os.ReadFile(file)
		if err != nil && !explicit {
			continue
		}
		if err != nil {
			return nil, &connError{msg: fmt.Sprintf("sftp %s: read identity: %v", s.addr, err)}
		}
		signer, err := ssh.ParsePrivateKey(b)
		var pm *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &pm):
			skipped = append(skipped, fmt.Sprintf("%s is protected by a passphrase: load it into ssh-agent (ssh-add %s)", file, file))
			continue
		case err != nil && explicit:
			return nil, &connError{msg: fmt.Sprintf("sftp %s: identity %s: %v", s.addr, file, err)}
		case err != nil:
			skipped = append(skipped, fmt.Sprintf("%s: %v", file, err))
			continue
		}
		k.signers = append(k.signers, signer)
		k.names = append(k.names, file)
	}
	if sock := s.cfg.AgentSocket; sock != "" {
		conn, err := net.DialTimeout("unix", sock, s.cfg.DialTimeout)
		var signers []ssh.Signer
		if err == nil {
			k.agent = conn
			signers, err = agent.NewClient(conn).Signers()
		}
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("ssh-agent at %s: %v", sock, err))
		}
		if len(signers) > 0 {
			k.signers = append(k.signers, signers...)
			k.names = append(k.names, fmt.Sprintf("%d ssh-agent keys", len(signers)))
		}
	}
	for _, msg := range skipped {
		s.cfg.Logger.Warn("SSH key not used", "archive", s.name, "reason", msg)
	}
	if len(k.signers) == 0 {
		k.close()
		msg := fmt.Sprintf("sftp %s: no SSH key to log in with: pass --identity FILE, or load a key into ssh-agent and set SSH_AUTH_SOCK", s.addr)
		if len(skipped) > 0 {
			msg += " (" + strings.Join(skipped, "; ") + ")"
		}
		return nil, &connError{msg: msg}
	}
	return k, nil
}
