package s3

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Every walship call is a process of its own, so each one's first request
// over https pays a whole TLS handshake: about 3 ms for the handshake
// itself (the server's certificate sent, its signature made and checked)
// on top of loading the trusted roots (8 ms for Go's view of Debian's
// store, nothing much for a CA bundle: see Config.CABundle). A session
// kept from an earlier call resumes instead (TLS 1.3 PSK with a fresh
// ECDHE exchange): no certificate is sent or verified, 1-2 ms saved. The
// roots are still loaded: crypto/tls (Go 1.26) checks on resumption that
// the session's chain ends in a root trusted now.
//
// The sessions are kept in files, one per server and trust setting, in a
// directory of the user's own (mode 0700, files 0600, written whole and
// renamed into place). What is kept is what crypto/tls keeps in memory:
// the server's ticket, the resumption secret and the chain verified when
// the session began. crypto/tls resumes only a session whose certificates
// have not expired, that names the server and whose root is still trusted,
// for at most the ticket's lifetime (7 days at most); a server that no
// longer knows the ticket makes a full handshake, as does any failure to
// read the file. The trust setting (the CA bundle, else SSL_CERT_FILE and
// SSL_CERT_DIR) is part of the file's name as well, so a session verified
// under another setting is not even offered. The file holds a secret that
// lets whoever reads it pass for the server to this user's walship: it is
// as private as the user's AWS credentials, and kept as privately.

// sessionCache is a tls.ClientSessionCache in files under dir, in front
// of an in-memory one for the connections of this process.
type sessionCache struct {
	dir   string
	trust string // the CA bundle, or SSL_CERT_FILE and SSL_CERT_DIR: what decides the roots
	mem   tls.ClientSessionCache

	mu       sync.Mutex
	fromDisk map[string]bool // keys already looked up on disk
}

// newSessionCache returns a cache in dir, created (0700) if missing, or an
// error if dir cannot be made private to this user.
func newSessionCache(dir, trust string) (*sessionCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("TLS session directory %s has mode %v: others must not read it (chmod 700 %s)", dir, fi.Mode().Perm(), dir)
	}
	return &sessionCache{dir: dir, trust: trust, mem: tls.NewLRUClientSessionCache(8), fromDisk: map[string]bool{}}, nil
}

// sessionMagic starts every session file: a format change makes old files
// unreadable, which is a full handshake, never an error.
const sessionMagic = "walship-tls-session-1\n"

func (c *sessionCache) path(key string) string {
	sum := sha256.Sum256([]byte(key + "\x00" + c.trust))
	return filepath.Join(c.dir, hex.EncodeToString(sum[:16]))
}

// Get returns the session for key: this process's, else the one a
// previous call stored.
func (c *sessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	if cs, ok := c.mem.Get(key); ok {
		return cs, true
	}
	c.mu.Lock()
	seen := c.fromDisk[key]
	c.fromDisk[key] = true
	c.mu.Unlock()
	if seen {
		return nil, false
	}
	cs, err := c.load(key)
	if err != nil {
		return nil, false
	}
	return cs, true
}

func (c *sessionCache) load(key string) (*tls.ClientSessionState, error) {
	b, err := os.ReadFile(c.path(key))
	if err != nil {
		return nil, err
	}
	rest, ok := cutPrefix(b, sessionMagic)
	if !ok || len(rest) < 4 {
		return nil, errors.New("not a session file")
	}
	n := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(n) > uint64(len(rest)) {
		return nil, errors.New("truncated session file")
	}
	ticket, state := rest[:n], rest[n:]
	ss, err := tls.ParseSessionState(state)
	if err != nil {
		return nil, err
	}
	return tls.NewResumptionState(ticket, ss)
}

func cutPrefix(b []byte, p string) ([]byte, bool) {
	if len(b) < len(p) || string(b[:len(p)]) != p {
		return nil, false
	}
	return b[len(p):], true
}

// Put keeps the session for key (a nil one forgets it), in memory and in
// its file. Failing to write the file only costs the next call a full
// handshake.
func (c *sessionCache) Put(key string, cs *tls.ClientSessionState) {
	c.mem.Put(key, cs)
	p := c.path(key)
	if cs == nil {
		_ = os.Remove(p)
		return
	}
	ticket, ss, err := cs.ResumptionState()
	if err != nil || ss == nil {
		return
	}
	state, err := ss.Bytes()
	if err != nil {
		return
	}
	b := make([]byte, 0, len(sessionMagic)+4+len(ticket)+len(state))
	b = append(b, sessionMagic...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ticket)))
	b = append(append(b, ticket...), state...)
	f, err := os.CreateTemp(c.dir, ".session-*")
	if err != nil {
		return
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil || os.Rename(f.Name(), p) != nil {
		_ = os.Remove(f.Name())
	}
}
