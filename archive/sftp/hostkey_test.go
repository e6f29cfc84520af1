package sftp_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/sftp"
	"github.com/walship/walship/archive/sftp/sftptest"
)

// checkRefused checks that connecting failed for good, as a wrong host key
// or credential must, and that Put through a lazily connecting Storage
// wrote nothing.
func checkRefused(t *testing.T, srv *sftptest.Server, cfg sftp.Config, kind error, want ...string) {
	t.Helper()
	_, err := sftp.Dial(t.Context(), cfg)
	if err == nil {
		t.Fatalf("Dial: got nil, want an error")
	}
	if kind != nil && !errors.Is(err, kind) {
		t.Errorf("Dial: got %v, want an error matching %v", err, kind)
	}
	if errors.Is(err, archive.ErrUnavailable) {
		t.Errorf("Dial: got %v, which matches archive.ErrUnavailable; retrying cannot fix it", err)
	}
	checkNotMissing(t, "Dial", err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Dial: got %q, want it to contain %q", err, w)
		}
	}
	s, err := sftp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put(t.Context(), "wal/seg", strings.NewReader("x")); err == nil {
		t.Errorf("Put: got nil, want an error")
	}
	entries, _ := os.ReadDir(filepath.Join(srv.Root, strings.TrimPrefix(cfg.Path, "/")))
	for _, e := range entries {
		t.Errorf("found %s in the archive after a refused connection, want nothing", e.Name())
	}
}

func TestUnknownHostKey(t *testing.T) {
	srv := sftptest.NewServer(t)
	fp := ssh.FingerprintSHA256(srv.HostKey.PublicKey())
	for _, tt := range []struct {
		name       string
		knownHosts string
	}{
		{"empty file", ""},
		{"other hosts", sftptest.KnownHostsLine("db9:22", srv.HostKey.PublicKey()) +
			sftptest.KnownHostsLine(fmt.Sprintf("127.0.0.1:%d", srv.Port+1), srv.HostKey.PublicKey())},
		{"no file", "-"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := serverConfig(t, srv, "archive")
			cfg.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
			if tt.knownHosts != "-" {
				sftptest.WriteFile(t, cfg.KnownHostsFile, []byte(tt.knownHosts))
			}
			checkRefused(t, srv, cfg, sftp.ErrUnknownHostKey,
				"unknown host key",
				fmt.Sprintf("add the host key: ssh-keyscan -p %d 127.0.0.1 >> %s", srv.Port, cfg.KnownHostsFile),
				fp)
			if tt.knownHosts == "-" {
				if _, err := os.Stat(cfg.KnownHostsFile); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("strict host key checking created %s", cfg.KnownHostsFile)
				}
			}
		})
	}
}

func TestChangedHostKey(t *testing.T) {
	srv := sftptest.NewServer(t)
	other, _ := sftptest.NewKey(t)
	for _, policy := range []sftp.HostKeyPolicy{sftp.Strict, sftp.AcceptNew} {
		t.Run(policy.String(), func(t *testing.T) {
			cfg := serverConfig(t, srv, "archive")
			cfg.HostKeyPolicy = policy
			cfg.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
			old := sftptest.KnownHostsLine(srv.Addr, other.PublicKey())
			sftptest.WriteFile(t, cfg.KnownHostsFile, []byte(old))
			checkRefused(t, srv, cfg, sftp.ErrHostKeyMismatch,
				"HOST KEY HAS CHANGED",
				"man-in-the-middle",
				ssh.FingerprintSHA256(srv.HostKey.PublicKey()),
				ssh.FingerprintSHA256(other.PublicKey()),
				fmt.Sprintf("ssh-keygen -R '[127.0.0.1]:%d' -f %s", srv.Port, cfg.KnownHostsFile))
			if b, _ := os.ReadFile(cfg.KnownHostsFile); string(b) != old {
				t.Errorf("known_hosts changed to %q, want it untouched", b)
			}
		})
	}
}

func TestAcceptNew(t *testing.T) {
	srv := sftptest.NewServer(t)
	cfg := serverConfig(t, srv, "archive")
	cfg.HostKeyPolicy = sftp.AcceptNew
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "new", "known_hosts")
	dial(t, cfg).Close()
	b, err := os.ReadFile(cfg.KnownHostsFile)
	if want := sftptest.KnownHostsLine(srv.Addr, srv.HostKey.PublicKey()); err != nil || string(b) != want {
		t.Fatalf("known_hosts after accept-new: got %q, %v; want %q", b, err, want)
	}
	cfg.HostKeyPolicy = sftp.Strict
	dial(t, cfg).Close()
	if b2, _ := os.ReadFile(cfg.KnownHostsFile); string(b2) != string(b) {
		t.Errorf("known_hosts changed on the second login: %q", b2)
	}
}

// TestAcceptNewAppends checks that accept-new keeps the lines there are,
// also after a last line without a newline.
func TestAcceptNewAppends(t *testing.T) {
	srv := sftptest.NewServer(t)
	other, _ := sftptest.NewKey(t)
	cfg := serverConfig(t, srv, "archive")
	cfg.HostKeyPolicy = sftp.AcceptNew
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
	first := strings.TrimSuffix(sftptest.KnownHostsLine("db9:22", other.PublicKey()), "\n")
	sftptest.WriteFile(t, cfg.KnownHostsFile, []byte(first))
	dial(t, cfg).Close()
	b, _ := os.ReadFile(cfg.KnownHostsFile)
	if want := first + "\n" + sftptest.KnownHostsLine(srv.Addr, srv.HostKey.PublicKey()); string(b) != want {
		t.Errorf("known_hosts: got %q, want %q", b, want)
	}
}

func TestHostKeyFingerprint(t *testing.T) {
	srv := sftptest.NewServer(t)
	other, _ := sftptest.NewKey(t)
	cfg := serverConfig(t, srv, "archive")
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "missing") // not read
	cfg.HostKeyFingerprint = ssh.FingerprintSHA256(srv.HostKey.PublicKey())
	dial(t, cfg).Close()

	cfg.HostKeyFingerprint = ssh.FingerprintSHA256(other.PublicKey())
	checkRefused(t, srv, cfg, sftp.ErrHostKeyMismatch, "HOST KEY MISMATCH", "man-in-the-middle",
		ssh.FingerprintSHA256(srv.HostKey.PublicKey()))

	for _, bad := range []string{"abc", "MD5:00:11", "SHA256:short", ssh.FingerprintLegacyMD5(other.PublicKey())} {
		cfg.HostKeyFingerprint = bad
		if _, err := sftp.New(cfg); err == nil || !strings.Contains(err.Error(), "SHA256:") {
			t.Errorf("New with fingerprint %q: got %v, want an error showing the SHA256: form", bad, err)
		}
	}
}

// TestHostKeyAlgorithms checks that a server with several host keys is
// asked for the one known_hosts lists, not taken for a changed host: the
// server also offers an ECDSA key, which clients prefer to Ed25519 unless
// told otherwise.
func TestHostKeyAlgorithms(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	srv := sftptest.NewServer(t, ecKey)
	dial(t, serverConfig(t, srv, "archive")).Close() // known_hosts lists the Ed25519 key only
}

func TestParseHostKeyPolicy(t *testing.T) {
	for in, want := range map[string]sftp.HostKeyPolicy{"strict": sftp.Strict, "": sftp.Strict, "accept-new": sftp.AcceptNew, "Accept-New": sftp.AcceptNew} {
		if got, err := sftp.ParseHostKeyPolicy(in); err != nil || got != want {
			t.Errorf("ParseHostKeyPolicy(%q): got %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"no", "off", "yes", "ignore", "accept"} {
		if _, err := sftp.ParseHostKeyPolicy(in); err == nil || !strings.Contains(err.Error(), "never ignores host keys") {
			t.Errorf("ParseHostKeyPolicy(%q): got %v, want an error saying host keys are never ignored", in, err)
		}
	}
}

func TestWrongIdentity(t *testing.T) {
	srv := sftptest.NewServer(t)
	cfg := serverConfig(t, srv, "archive")
	_, pem := sftptest.NewKey(t)
	cfg.IdentityFiles = []string{filepath.Join(t.TempDir(), "id_other")}
	sftptest.WriteFile(t, cfg.IdentityFiles[0], pem)
	checkRefused(t, srv, cfg, nil, "log in as walship", cfg.IdentityFiles[0], "authorized_keys")
}

func TestMissingIdentity(t *testing.T) {
	srv := sftptest.NewServer(t)
	cfg := serverConfig(t, srv, "archive")
	cfg.IdentityFiles = []string{filepath.Join(t.TempDir(), "id_missing")}
	checkRefused(t, srv, cfg, nil, cfg.IdentityFiles[0])
}

func TestEncryptedIdentity(t *testing.T) {
	srv := sftptest.NewServer(t)
	cfg := serverConfig(t, srv, "archive")
	_, priv, _ := ed25519Key(t)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.IdentityFiles = []string{filepath.Join(t.TempDir(), "id_encrypted")}
	sftptest.WriteFile(t, cfg.IdentityFiles[0], pemEncode(block))
	checkRefused(t, srv, cfg, nil, "passphrase", "ssh-add "+cfg.IdentityFiles[0], "--identity")
}

// TestAgent logs in with a key that only ssh-agent holds.
func TestAgent(t *testing.T) {
	srv := sftptest.NewServer(t)
	cfg := serverConfig(t, srv, "archive")
	t.Setenv("HOME", t.TempDir()) // no default identity files
	cfg.IdentityFiles = nil
	key, err := ssh.ParseRawPrivateKey(mustRead(t, srv.IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: key}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(keyring, c); c.Close() }()
		}
	}()

	checkRefused(t, srv, cfg, nil, "no SSH key", "--identity", "SSH_AUTH_SOCK")
	cfg.AgentSocket = sock
	s := dial(t, cfg)
	if _, err := s.List(t.Context(), ""); err != nil {
		t.Errorf("List as the agent's key: %v", err)
	}
}

// TestDefaultIdentity logs in with ~/.ssh/id_ed25519 when no identity is
// given, as ssh does.
func TestDefaultIdentity(t *testing.T) {
	srv := sftptest.NewServer(t)
	cfg := serverConfig(t, srv, "archive")
	home := t.TempDir()
	t.Setenv("HOME", home)
	if err := os.Mkdir(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	sftptest.WriteFile(t, filepath.Join(home, ".ssh", "id_ed25519"), mustRead(t, srv.IdentityFile))
	sftptest.WriteFile(t, filepath.Join(home, ".ssh", "known_hosts"), mustRead(t, srv.KnownHostsFile))
	cfg.IdentityFiles, cfg.KnownHostsFile = nil, ""
	dial(t, cfg).Close()
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ed25519Key(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey, error) {
	t.Helper()
	return ed25519.GenerateKey(rand.Reader)
}

func pemEncode(b *pem.Block) []byte { return pem.EncodeToMemory(b) }
