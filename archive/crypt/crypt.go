package crypt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/walship/walship/archive"
)

// ErrKey is returned when a file cannot be decrypted with the identities
// at hand: none given, or none of them the key the file is encrypted to.
// It is not corruption and not "not found": a standby without the right
// key must stop, not promote.
var ErrKey = errors.New("no identity for the archive's encryption key")

// ErrNotEncrypted is returned when an encrypted archive holds a file that
// is not encrypted (it matches archive.ErrCorrupt: it is never served), or
// when Require is set and the archive has no encryption keys.
var ErrNotEncrypted = errors.New("not encrypted")

// ageMagic starts every age file.
const ageMagic = "age-encryption.org/v1\n"

// stanzaType is the type of the stanza walship adds to each file's header:
// "-> walship v1 k=<fp>,<fp> [d=<digest>]". Its arguments are in the
// clear (the header's MAC covers them, so a reader with the key sees any
// change) and tell, without a private key, which keys a file needs and
// the digest of its content. age ignores stanzas it does not know, so the
// age tool decrypts walship's files as they are.
const stanzaType = "walship"

// Config says how a Storage encrypts and decrypts.
type Config struct {
	// Identities decrypt; a writer (the primary) needs none.
	Identities Identities
	// Require refuses to read or write an archive that has no key set,
	// so that a deleted encryption/ directory is not taken for an archive
	// that was never encrypted.
	Require bool
	// Reload is how long a key set is trusted before it is read again,
	// so that a long-running tail or exporter picks up a new key (default
	// one minute).
	Reload time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// Storage encrypts every file it stores, except the few that must stay
// readable without a private key (Plain), to the recipients of the
// archive's newest key set, and decrypts and authenticates every file it
// opens. An archive without key sets passes through unchanged, unless
// the Storage has identities or Require: then it is refused.
type Storage struct {
	st  archive.Storage
	cfg Config

	mu     sync.Mutex
	sets   []KeySet
	loaded time.Time
}

var _ archive.Storage = (*Storage)(nil)

// New returns st with encryption; see Storage.
func New(st archive.Storage, cfg Config) *Storage { return newStorage(st, cfg) }

func newStorage(st archive.Storage, cfg Config) *Storage {
	if cfg.Reload <= 0 {
		cfg.Reload = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Storage{st: st, cfg: cfg}
}

// Unwrap returns the Storage that holds the encrypted files.
func (s *Storage) Unwrap() archive.Storage { return s.st }

// Plain reports whether name is stored unencrypted in an encrypted
// archive: walship.json (the cluster's identity, which every push checks),
// the key sets, and the backups' catalog entries (<id>.json and
// <id>.started: LSNs, times, sizes, file names; the inprogress markers of
// running backups), so that a primary, which holds no private key, can
// push, take backups and expire old ones.
func Plain(name string) bool {
	if name == archive.IdentityFile || strings.HasPrefix(name, KeysDir+"/") {
		return true
	}
	dir, base := path.Split(name)
	if dir == archive.BackupsDir+"/" {
		return strings.HasSuffix(base, ".json") || strings.HasSuffix(base, ".started")
	}
	// The markers of running backups (backups/<id>/inprogress-<n>.json),
	// which expire and other backups read to keep their WAL.
	return strings.HasPrefix(dir, archive.BackupsDir+"/") && strings.Count(dir, "/") == 2 &&
		strings.HasPrefix(base, "inprogress-") && strings.HasSuffix(base, ".json")
}

// keys returns the archive's key sets, read again when older than Reload.
func (s *Storage) keys(ctx context.Context) ([]KeySet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.loaded.IsZero() && s.cfg.Now().Sub(s.loaded) < s.cfg.Reload {
		return s.sets, nil
	}
	sets, err := ReadKeySets(ctx, s.st)
	if err != nil {
		return nil, err
	}
	if len(sets) < len(s.sets) {
		// Key sets are never removed: one gone is damage or an attack,
		// and writing plaintext (or to an older key) because of it is
		// what must not happen.
		return nil, fmt.Errorf("%w: the archive had %d encryption key sets and now lists %d: restore %s/ from a copy", ErrNotEncrypted, len(s.sets), len(sets), KeysDir)
	}
	s.sets, s.loaded = sets, s.cfg.Now()
	return sets, nil
}

// Active returns the key set in force, or false for an archive without
// encryption.
func (s *Storage) Active(ctx context.Context) (KeySet, bool, error) {
	sets, err := s.keys(ctx)
	if err != nil {
		return KeySet{}, false, err
	}
	if len(sets) == 0 {
		if s.cfg.Require || len(s.identities().IDs) > 0 {
			return KeySet{}, false, fmt.Errorf("%w: archive %s has no encryption keys (%s/ is empty), but walship was given an identity or told to require encryption: "+
				"if the archive is new, run walship encryption init; if %s/ was removed, restore it from a copy", ErrNotEncrypted, s.st, KeysDir, KeysDir)
		}
		return KeySet{}, false, nil
	}
	return sets[len(sets)-1], true, nil
}

// identities returns the identities in use.
func (s *Storage) identities() Identities {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.Identities
}

// reloadIdentities reads the identity file again if it changed since it
// was read, and reports whether it did: a long-running reader (a wait
// that waits, the prefetcher) sees a key added to its file.
func (s *Storage) reloadIdentities() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.cfg.Identities
	if cur.File == "" {
		return false
	}
	fi, err := os.Stat(cur.File)
	if err != nil || (fi.ModTime().Equal(cur.modTime) && fi.Size() == cur.size) {
		return false
	}
	ids, err := LoadIdentities(cur.File)
	if err != nil {
		s.cfg.Logger.Warn("cannot read the changed encryption identity file", "path", cur.File, "err", err)
		return false
	}
	s.cfg.Identities = ids
	return true
}

// Put encrypts r to the active key set and stores it.
func (s *Storage) Put(ctx context.Context, name string, r io.Reader) error {
	return s.put(ctx, name, r, "", s.st.Put)
}

// PutDigest is Put, recording digest (Digest) in the file's header.
func (s *Storage) PutDigest(ctx context.Context, name string, r io.Reader, digest string) error {
	return s.put(ctx, name, r, digest, s.st.Put)
}

// Rewrap replaces name with r, encrypted to the active key set with
// digest in its header, through the backend's archive.Replacer.
func (s *Storage) Rewrap(ctx context.Context, name string, r io.Reader, digest string) error {
	rp, ok := s.st.(archive.Replacer)
	if !ok {
		return fmt.Errorf("replace %s: %w: archive %s cannot replace files", name, errors.ErrUnsupported, s.st)
	}
	return s.put(ctx, name, r, digest, rp.Replace)
}

func (s *Storage) put(ctx context.Context, name string, r io.Reader, digest string,
	store func(context.Context, string, io.Reader) error) error {
	if err := archive.ValidName(name); err != nil {
		return err
	}
	if Plain(name) {
		return store(ctx, name, r)
	}
	ks, ok, err := s.Active(ctx)
	if err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	if !ok {
		return store(ctx, name, r)
	}
	er, err := encryptReader(r, ks, digest)
	if err != nil {
		return fmt.Errorf("put %s: encrypt: %w", name, err)
	}
	return store(ctx, name, er)
}

// encryptReader returns a reader of r encrypted to ks, with walship's
// stanza. The work happens as the result is read, in the reader's
// goroutine; age's stream cipher is a small part of a push's time.
func encryptReader(r io.Reader, ks KeySet, digest string) (io.Reader, error) {
	recips, err := ks.recipients()
	if err != nil {
		return nil, err
	}
	args := []string{"v1", "k=" + strings.Join(ks.Fingerprints(), ",")}
	if digest != "" {
		args = append(args, "d="+digest)
	}
	st := &stanzaRecipient{args: args}
	for _, rc := range recips {
		if _, ok := rc.(*age.HybridRecipient); ok {
			st.labels = []string{"postquantum"}
		}
	}
	return age.EncryptReader(r, append(recips, st)...)
}

// stanzaRecipient adds walship's stanza to a header. It wraps nothing.
type stanzaRecipient struct {
	args   []string
	labels []string
}

func (r *stanzaRecipient) Wrap([]byte) ([]*age.Stanza, error) {
	return []*age.Stanza{{Type: stanzaType, Args: r.args}}, nil
}

// WrapWithLabels matches the labels of the real recipients: age refuses to
// mix post-quantum recipients with others.
func (r *stanzaRecipient) WrapWithLabels(k []byte) ([]*age.Stanza, []string, error) {
	s, err := r.Wrap(k)
	return s, r.labels, err
}

// Header is what the clear header of an encrypted file says.
type Header struct {
	// Keys are the fingerprints of the keys the file is encrypted to.
	Keys []string
	// Digest is the digest of the content recorded at Put, if any.
	Digest string
}

// maxHeader bounds the header of an encrypted file: a few stanzas, the
// largest a post-quantum one of some 1.5 KiB.
const maxHeader = 64 << 10

// ReadHeader reads the clear header at the start of an encrypted file.
// A file that is not an age file returns ErrNotEncrypted.
func ReadHeader(br *bufio.Reader) (Header, error) {
	magic, err := br.Peek(len(ageMagic))
	if err != nil && len(magic) < len(ageMagic) {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return Header{}, ErrNotEncrypted
		}
		return Header{}, err
	}
	if string(magic) != ageMagic {
		return Header{}, ErrNotEncrypted
	}
	var h Header
	peek, _ := br.Peek(min(br.Size(), maxHeader))
	for line := range bytes.SplitSeq(peek, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("--- ")) {
			return h, nil
		}
		f := strings.Fields(string(line))
		if len(f) < 3 || f[0] != "->" || f[1] != stanzaType {
			continue
		}
		for _, a := range f[3:] {
			if v, ok := strings.CutPrefix(a, "k="); ok {
				h.Keys = strings.Split(v, ",")
			} else if v, ok := strings.CutPrefix(a, "d="); ok {
				h.Digest = v
			}
		}
	}
	return h, nil // a header longer than the peek: age will say
}

// Open opens name and returns a reader of its decrypted content. Every
// byte is authenticated as it is read: a changed, truncated or extended
// file reads as an error matching archive.ErrCorrupt, never as content.
func (s *Storage) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := archive.ValidName(name); err != nil {
		return nil, err
	}
	if Plain(name) {
		return s.st.Open(ctx, name)
	}
	_, encrypted, err := s.Active(ctx)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	rc, err := s.st.Open(ctx, name)
	if err != nil || !encrypted {
		return rc, err
	}
	br := bufio.NewReaderSize(rc, maxHeader)
	h, err := ReadHeader(br)
	if errors.Is(err, ErrNotEncrypted) {
		rc.Close()
		return nil, fmt.Errorf("%w: %s in %s is %w, and the archive is: it was archived before walship encryption init "+
			"(run walship encryption rewrap to encrypt it) or by something else, and walship does not serve it",
			archive.ErrCorrupt, name, s.st, ErrNotEncrypted)
	}
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	if len(s.identities().IDs) == 0 {
		rc.Close()
		return nil, fmt.Errorf("%w: %s is encrypted to key %s: give its identity file with --encryption-identity (WALSHIP_ENCRYPTION_IDENTITY)",
			ErrKey, name, strings.Join(h.Keys, " or "))
	}
	ids := s.identities()
	src := &srcReader{r: br}
	pr, err := age.Decrypt(src, ids.IDs...)
	if err != nil && src.err != nil {
		rc.Close()
		return nil, fmt.Errorf("open %s: %w", name, src.err)
	}
	if err != nil {
		rc.Close()
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			if s.reloadIdentities() {
				// The identity file changed since this process read it (a
				// key added in a rotation while wait waited): try again.
				return s.Open(ctx, name)
			}
			return nil, fmt.Errorf("%w: %s is encrypted to key %s, and %s holds key %s: give the identity of key %s",
				ErrKey, name, strings.Join(h.Keys, " or "), ids.File, strings.Join(ids.Fingerprints, ", "),
				strings.Join(h.Keys, " or "))
		}
		return nil, fmt.Errorf("%w: %s: %w", archive.ErrCorrupt, name, err)
	}
	return &decrypted{src: src, r: pr, c: rc, name: name}, nil
}

// decrypted reads a decrypted file. age reports a failed authentication
// as a read error; this marks it as corruption, so that a standby stops
// rather than apply it or take it for "not found". An error of the
// backend's reader stays as it is (worth a retry).
type decrypted struct {
	src  *srcReader
	r    io.Reader
	c    io.Closer
	name string
	err  error
}

func (d *decrypted) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		if d.src.err != nil {
			d.err = d.src.err
		} else {
			d.err = fmt.Errorf("%w: %s fails its authentication (changed, truncated or not walship's): %w", archive.ErrCorrupt, d.name, err)
		}
		return n, d.err
	}
	return n, err
}

// srcReader remembers the first error of the backend's reader other than
// io.EOF, so that decrypted tells a failed read (worth a retry) from a
// failed authentication (final).
type srcReader struct {
	r   io.Reader
	err error
}

func (s *srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

func (d *decrypted) Close() error { return d.c.Close() }

// Stat, List and Remove see the files as stored: Size is the encrypted
// size.
func (s *Storage) Stat(ctx context.Context, name string) (archive.FileInfo, error) {
	return s.st.Stat(ctx, name)
}

func (s *Storage) List(ctx context.Context, dir string) ([]archive.FileInfo, error) {
	return s.st.List(ctx, dir)
}

func (s *Storage) Remove(ctx context.Context, name string) error { return s.st.Remove(ctx, name) }

func (s *Storage) String() string { return s.st.String() }

func (s *Storage) Close() error { return s.st.Close() }

// Encodes reports that Stat's sizes are those of the encrypted files, for
// archive.Encoding.
func (s *Storage) Encodes() bool { return true }

// FileHeader reads the clear header of the stored file name without
// decrypting it: which keys it needs and the digest recorded with it. A
// file that is not encrypted returns ErrNotEncrypted.
func (s *Storage) FileHeader(ctx context.Context, name string) (Header, error) {
	rc, err := s.st.Open(ctx, name)
	if err != nil {
		return Header{}, err
	}
	defer rc.Close()
	return ReadHeader(bufio.NewReaderSize(rc, maxHeader))
}

// Needs reports whether a file encrypted to keys must be encrypted again to
// be readable with the active key set ks alone.
func Needs(keys []string, ks KeySet) bool {
	return !slices.Equal(sortedCopy(keys), ks.Fingerprints())
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// Of returns the encryption layer of st, if st is one made by New.
func Of(st archive.Storage) (*Storage, bool) {
	c, ok := st.(*Storage)
	return c, ok
}

// Watch watches through the backend; see archive.Watcher. A backend that
// cannot watch is an error, and the caller polls.
func (s *Storage) Watch(ctx context.Context, dir string) (<-chan struct{}, error) {
	w, ok := s.st.(archive.Watcher)
	if !ok {
		return nil, fmt.Errorf("archive %s cannot be watched: %w", s.st, errors.ErrUnsupported)
	}
	return w.Watch(ctx, dir)
}

// ListTemp lists the backend's temporary files; see archive.TempFiles. A
// backend without temporary files to list is an error matching
// errors.ErrUnsupported.
func (s *Storage) ListTemp(ctx context.Context, dir string) ([]archive.TempFile, error) {
	tf, ok := s.st.(archive.TempFiles)
	if !ok {
		return nil, fmt.Errorf("archive %s cannot list its temporary files: %w", s.st, errors.ErrUnsupported)
	}
	return tf.ListTemp(ctx, dir)
}

// RemoveTemp removes a temporary file of the backend; see ListTemp.
func (s *Storage) RemoveTemp(ctx context.Context, dir, name string) error {
	tf, ok := s.st.(archive.TempFiles)
	if !ok {
		return fmt.Errorf("archive %s cannot list its temporary files: %w", s.st, errors.ErrUnsupported)
	}
	return tf.RemoveTemp(ctx, dir, name)
}

// ListDirs lists directories through the backend; see archive.DirLister.
// The layer's own directory, KeysDir, is not listed.
func (s *Storage) ListDirs(ctx context.Context, dir string) ([]string, error) {
	dirs, err := archive.ListDirs(ctx, s.st, dir)
	if dir == "" {
		dirs = slices.DeleteFunc(dirs, func(d string) bool { return d == KeysDir })
	}
	return dirs, err
}

var (
	_ archive.Watcher   = (*Storage)(nil)
	_ archive.TempFiles = (*Storage)(nil)
	_ archive.DirLister = (*Storage)(nil)
	_ archive.Encoding  = (*Storage)(nil)
)
