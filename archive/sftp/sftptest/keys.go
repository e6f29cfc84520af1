// Package sftptest starts SSH servers for tests of the SFTP archive: an
// in-process one (NewServer), a real OpenSSH sshd (StartSSHD), and a TCP
// proxy to break connections with (NewProxy). Each comes with its own host
// key, an authorized client key in a file, and a known_hosts file that lists
// the host key, so a client configured with them verifies the server
// strictly, as in production.
package sftptest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// NewKey returns a new Ed25519 key and its private key file in OpenSSH's
// format, as ssh-keygen writes it.
func NewKey(t testing.TB) (ssh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return signer, pem.EncodeToMemory(block)
}

// WriteFile writes a file of mode 0600, as ssh wants key files.
func WriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// KnownHostsLine returns the known_hosts line that trusts key for addr
// ("host:port").
func KnownHostsLine(addr string, key ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n"
}

// Keys are the files a client needs to log in to a test server.
type Keys struct {
	// HostKey is the server's host key.
	HostKey ssh.Signer
	// ClientKey is the key the server accepts.
	ClientKey ssh.Signer
	// IdentityFile holds ClientKey's private key.
	IdentityFile string
	// KnownHostsFile lists HostKey for the server's address.
	KnownHostsFile string
}

// newKeys makes a host key and a client key, and writes the client's files
// into dir; the known_hosts file stays empty until the address is known.
func newKeys(t testing.TB, dir string) (Keys, []byte) {
	t.Helper()
	host, hostPEM := NewKey(t)
	client, clientPEM := NewKey(t)
	k := Keys{
		HostKey:        host,
		ClientKey:      client,
		IdentityFile:   filepath.Join(dir, "id_ed25519"),
		KnownHostsFile: filepath.Join(dir, "known_hosts"),
	}
	WriteFile(t, k.IdentityFile, clientPEM)
	return k, hostPEM
}
