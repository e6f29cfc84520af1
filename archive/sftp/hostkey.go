package sftp

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyPolicy says what to do with a server whose key known_hosts does not
// list. A key that differs from a listed one is refused under every policy.
type HostKeyPolicy int

const (
	// Strict refuses a host that known_hosts does not list.
	Strict HostKeyPolicy = iota
	// AcceptNew adds the key of a host that known_hosts does not list, and
	// trusts it from then on (OpenSSH's StrictHostKeyChecking=accept-new).
	AcceptNew
)

// ParseHostKeyPolicy reads "strict" or "accept-new".
func ParseHostKeyPolicy(s string) (HostKeyPolicy, error) {
	switch strings.ToLower(s) {
	case "strict", "":
		return Strict, nil
	case "accept-new":
		return AcceptNew, nil
	}
	return 0, fmt.Errorf("host key policy %q: use strict or accept-new (a pinned key: --host-key-fingerprint SHA256:…); "+
		"walship never ignores host keys", s)
}

func (p HostKeyPolicy) String() string {
	if p == AcceptNew {
		return "accept-new"
	}
	return "strict"
}

var (
	// ErrUnknownHostKey is matched by the error of connecting to a server
	// whose host key known_hosts does not list.
	ErrUnknownHostKey = errors.New("unknown host key")
	// ErrHostKeyMismatch is matched by the error of connecting to a server
	// whose key differs from the one known_hosts lists, or from the pinned
	// fingerprint: a man-in-the-middle attack, or a reinstalled server.
	ErrHostKeyMismatch = errors.New("host key mismatch")
)

// checkFingerprint checks the form of a pinned fingerprint.
func checkFingerprint(fp string) error {
	b64, ok := strings.CutPrefix(fp, "SHA256:")
	if b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(b64, "=")); !ok || err != nil || len(b) != 32 {
		return fmt.Errorf("host key fingerprint %q: write it as ssh-keygen -lf prints it, \"SHA256:\" and 43 characters", fp)
	}
	return nil
}

// hostKeys verifies the host key of one connection.
type hostKeys struct {
	s    *Storage
	file string              // known_hosts, resolved; "" with a pinned fingerprint
	db   ssh.HostKeyCallback // nil with a pinned fingerprint
}

// hostKeys reads known_hosts, unless a fingerprint is pinned. A missing file
// lists no host.
func (s *Storage) hostKeys() (*hostKeys, error) {
	h := &hostKeys{s: s}
	if s.cfg.HostKeyFingerprint != "" {
		return h, nil
	}
	file := s.cfg.KnownHostsFile
	if file == "" {
		file = DefaultKnownHostsFile
	}
	file, err := expandHome(file)
	if err != nil {
		return nil, err
	}
	h.file = file
	h.db, err = knownhosts.New(file)
	if errors.Is(err, fs.ErrNotExist) {
		h.db = func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("read known hosts: %v", err)
	}
	return h, nil
}

// probeKey is a key no server has, for asking known_hosts which keys it
// lists for a host. It is made on first use: generating it at start-up
// cost every walship call, local archives too, 2 ms.
var probeKey = sync.OnceValue(func() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
})

// algorithms returns the host key algorithms to ask the server for: those
// of the keys known_hosts lists for it, so that a server with several keys
// shows the one we know instead of one we would take for a changed key.
// Nil means the default order.
func (h *hostKeys) algorithms() []string {
	if h.db == nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if err := h.db(h.s.addr, &net.TCPAddr{}, probeKey()); !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
		default:
			algos = append(algos, t)
		}
	}
	return algos
}

// check is the ssh.HostKeyCallback.
func (h *hostKeys) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	s := h.s
	got := ssh.FingerprintSHA256(key)
	if want := s.cfg.HostKeyFingerprint; want != "" {
		if strings.TrimRight(got, "=") == strings.TrimRight(want, "=") {
			return nil
		}
		return &connError{kind: ErrHostKeyMismatch, msg: fmt.Sprintf(
			"sftp %s: HOST KEY MISMATCH: the server's %s key is %s, but the fingerprint given is %s. "+
				"Someone may be intercepting the connection (a man-in-the-middle attack), or the server's key was replaced. "+
				"Nothing was sent. Check the key on the server (ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub) before changing the fingerprint",
			s.addr, key.Type(), got, want, keyFileType(key))}
	}

	err := h.db(hostname, remote, key)
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return &connError{kind: ErrHostKeyMismatch, msg: fmt.Sprintf(
			"sftp %s: the server's %s key %s is revoked in %s", s.addr, key.Type(), got, re.Revoked.String())}
	case !errors.As(err, &ke):
		return &connError{msg: fmt.Sprintf("sftp %s: check host key: %v", s.addr, err)}
	case len(ke.Want) > 0:
		var known []string
		for _, k := range ke.Want {
			known = append(known, fmt.Sprintf("%s %s (%s:%d)", k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Filename, k.Line))
		}
		return &connError{kind: ErrHostKeyMismatch, msg: fmt.Sprintf(
			"sftp %s: HOST KEY HAS CHANGED: the server's %s key is %s, but %s lists %s for %s. "+
				"Someone may be intercepting the connection (a man-in-the-middle attack), or the server was reinstalled. "+
				"Nothing was sent. Only if its administrator confirms the new key, remove the old one: %s; then add the new one: %s",
			s.addr, key.Type(), got, h.file, strings.Join(known, ", "), knownhosts.Normalize(s.addr),
			h.keygenRemove(), h.keyscan())}
	case s.cfg.HostKeyPolicy == AcceptNew:
		if err := appendKnownHost(h.file, knownhosts.Normalize(s.addr), key); err != nil {
			return &connError{msg: fmt.Sprintf("sftp %s: add the host key to %s: %v", s.addr, h.file, err)}
		}
		s.cfg.Logger.Warn("added the host key of a new host to known_hosts (host key policy accept-new)",
			"host", knownhosts.Normalize(s.addr), "key", key.Type()+" "+got, "path", h.file)
		return nil
	}
	return &connError{kind: ErrUnknownHostKey, msg: fmt.Sprintf(
		"sftp %s: unknown host key: %s lists no key for %s, and the server offers %s %s. "+
			"Check that fingerprint with the server's administrator (ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub on the server), "+
			"then add the host key: %s (or pin it: --host-key-fingerprint %s)",
		s.addr, h.file, knownhosts.Normalize(s.addr), key.Type(), got, keyFileType(key), h.keyscan(), got)}
}

// keyscan is the command that adds the server's keys to known_hosts.
func (h *hostKeys) keyscan() string {
	cmd := "ssh-keyscan "
	if h.s.cfg.Port != DefaultPort {
		cmd += "-p " + strconv.Itoa(h.s.cfg.Port) + " "
	}
	return cmd + h.s.cfg.Host + " >> " + shellQuote(h.file)
}

// keygenRemove is the command that removes the server's keys from
// known_hosts.
func (h *hostKeys) keygenRemove() string {
	return "ssh-keygen -R " + shellQuote(knownhosts.Normalize(h.s.addr)) + " -f " + shellQuote(h.file)
}

// keyFileType names a key type as OpenSSH names its host key files.
func keyFileType(key ssh.PublicKey) string {
	switch key.Type() {
	case ssh.KeyAlgoED25519:
		return "ed25519"
	case ssh.KeyAlgoRSA:
		return "rsa"
	case ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
		return "ecdsa"
	}
	return "*"
}

// appendKnownHost adds a line for host to known_hosts, creating the file
// (and its directory) when missing.
func appendKnownHost(file, host string, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	line := knownhosts.Line([]string{host}, key) + "\n"
	// Start a line of our own when the file does not end with a newline.
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err == nil && !bytes.Equal(last, []byte("\n")) {
			line = "\n" + line
		}
	}
	_, err = io.WriteString(f, line)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// expandHome replaces a leading "~/" with the home directory.
func expandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("%s: %v: give an absolute path", p, err)
	}
	return filepath.Join(home, p[1:]), nil
}

// shellQuote quotes s for a command line shown to the user, when needed.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`[]*?;&|<>(){}#~!") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
