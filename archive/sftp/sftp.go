package sftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"

	"github.com/walship/walship/archive"
)

// Defaults of a Config.
const (
	DefaultPort           = 22
	DefaultDialTimeout    = 30 * time.Second
	DefaultIOTimeout      = 30 * time.Second
	DefaultKnownHostsFile = "~/.ssh/known_hosts"
)

// DefaultIdentityFiles are the private keys tried when Config names none,
// those of them that exist, as ssh(1) does.
var DefaultIdentityFiles = []string{"~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa"}

// Config says where an archive is and how to log in. In file names, a
// leading "~/" stands for the home directory of the user walship runs as.
type Config struct {
	// Host is the server's name or IP address; Port its port, 0 for
	// DefaultPort.
	Host string
	Port int
	// User is the login name; empty means the user walship runs as.
	User string
	// Path is the archive root on the server: an absolute path, or one
	// relative to the login directory ("." for the login directory). It
	// must exist: a typo must not start a new, empty archive.
	Path string

	// IdentityFiles are private key files to log in with, tried before the
	// agent's keys. Empty means those of DefaultIdentityFiles that exist.
	// Keys protected by a passphrase must be loaded into ssh-agent instead.
	IdentityFiles []string
	// AgentSocket is the Unix socket of ssh-agent, as SSH_AUTH_SOCK names
	// it; empty means no agent.
	AgentSocket string

	// KnownHostsFile lists the host keys to trust; empty means
	// DefaultKnownHostsFile. It is not read when HostKeyFingerprint is set.
	KnownHostsFile string
	// HostKeyPolicy says what to do with a host that KnownHostsFile does
	// not list: refuse it (Strict, the zero value) or add its key
	// (AcceptNew).
	HostKeyPolicy HostKeyPolicy
	// HostKeyFingerprint, when set, is the one host key to accept, as
	// ssh-keygen -l prints it ("SHA256:" and 43 base64 characters).
	HostKeyFingerprint string

	// FileMode is the permission bits of the files Put stores; the
	// directories it creates get archive.DirMode of it. Zero means
	// archive.DefaultFileMode; archive.CheckFileMode says which are valid.
	// The server's umask applies when a file is created, so Put sets the
	// mode explicitly afterwards.
	FileMode fs.FileMode

	// DialTimeout bounds connecting and logging in; IOTimeout bounds each
	// wait for an answer of the server. Zero means the defaults.
	DialTimeout time.Duration
	IOTimeout   time.Duration

	// Logger receives connection events; nil logs nothing.
	Logger *slog.Logger
}

// Storage is an archive in a directory of an SFTP server.
type Storage struct {
	cfg  Config
	addr string // host:port, for dialing and messages
	name string // the URL, for String

	// dialing holds one token: one caller dials while others wait.
	dialing chan struct{}

	// noChmod is set once the server said it cannot set modes.
	noChmod atomic.Bool

	mu      sync.Mutex
	c       *conn    // nil before the first dial; dead once broken
	orphans []string // temporary files a broken connection left behind
	closed  bool
}

var (
	_ archive.Storage   = (*Storage)(nil)
	_ archive.Moder     = (*Storage)(nil)
	_ archive.TempFiles = (*Storage)(nil)
)

// New returns a Storage for the archive cfg describes, without connecting:
// the first call connects. It fails only on a malformed Config.
func New(cfg Config) (*Storage, error) {
	if cfg.Host == "" {
		return nil, errors.New("sftp: no host")
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("sftp: port %d out of range 1-65535", cfg.Port)
	}
	if cfg.Path == "" {
		return nil, errors.New("sftp: no archive path")
	}
	cfg.Path = path.Clean(cfg.Path)
	if cfg.HostKeyFingerprint != "" {
		if err := checkFingerprint(cfg.HostKeyFingerprint); err != nil {
			return nil, err
		}
	}
	if cfg.HostKeyPolicy != Strict && cfg.HostKeyPolicy != AcceptNew {
		return nil, fmt.Errorf("sftp: unknown host key policy %d", cfg.HostKeyPolicy)
	}
	if cfg.FileMode == 0 {
		cfg.FileMode = archive.DefaultFileMode
	}
	if err := archive.CheckFileMode(cfg.FileMode); err != nil {
		return nil, fmt.Errorf("sftp: %w", err)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.IOTimeout <= 0 {
		cfg.IOTimeout = DefaultIOTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	u := archive.URL{Scheme: "sftp", User: cfg.User, Host: cfg.Host, Path: cfg.Path}
	if cfg.Port != DefaultPort {
		u.Port = cfg.Port
	}
	s := &Storage{
		cfg:     cfg,
		addr:    net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
		name:    u.String(),
		dialing: make(chan struct{}, 1),
	}
	s.dialing <- struct{}{}
	return s, nil
}

// Dial connects to the archive cfg describes and checks that its directory
// exists. The Storage reconnects by itself when the connection breaks.
func Dial(ctx context.Context, cfg Config) (*Storage, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := s.conn(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// String returns the archive's URL.
func (s *Storage) String() string { return s.name }

// FileMode returns the permission bits of the files Put stores; see
// archive.Moder and Config.FileMode.
func (s *Storage) FileMode() fs.FileMode { return s.cfg.FileMode }

// remote returns the server's path of an archive name.
func (s *Storage) remote(name string) string { return path.Join(s.cfg.Path, name) }

// login spells the login for an ssh(1) command line in messages.
func (s *Storage) login() string {
	l := s.cfg.Host
	if s.cfg.User != "" {
		l = s.cfg.User + "@" + l
	}
	if s.cfg.Port != DefaultPort {
		l = "-p " + strconv.Itoa(s.cfg.Port) + " " + l
	}
	return l
}

// Put stores r under name; see archive.Storage and the package comment.
func (s *Storage) Put(ctx context.Context, name string, r io.Reader) error {
	return s.store(ctx, name, r, false)
}

// Replace replaces the file name with the bytes of r; see
// archive.Replacer. It needs the server's posix-rename@openssh.com
// extension, which replaces atomically.
func (s *Storage) Replace(ctx context.Context, name string, r io.Reader) error {
	return s.store(ctx, name, r, true)
}

// store is Put, or Replace when replace is set.
func (s *Storage) store(ctx context.Context, name string, r io.Reader, replace bool) (err error) {
	if err := archive.ValidName(name); err != nil {
		return err
	}
	final := s.remote(name)
	defer func() {
		if err != nil {
			err = fmt.Errorf("put %s: %w", final, err)
		}
	}()
	c, err := s.conn(ctx)
	if err != nil {
		return err
	}
	if replace {
		if _, err := s.stat(ctx, c, final); err != nil {
			return err
		}
	}
	dir := path.Dir(final)
	if err := s.mkdirAll(ctx, c, dir); err != nil {
		return err
	}

	tmp := path.Join(dir, archive.TempName(path.Base(final)))
	var f *sftp.File
	err = s.call(ctx, c, "create", tmp, func() (err error) {
		f, err = c.sftp.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		return err
	})
	if err != nil {
		return err
	}
	named := false
	defer func() {
		if !named {
			s.discard(c, f, tmp)
		}
	}()
	// Before any data: the server's umask took bits away at creation.
	err = s.call(ctx, c, "chmod", tmp, func() error { return f.Chmod(s.cfg.FileMode) })
	if err = s.chmodError(err); err != nil {
		return err
	}

	if err := s.write(ctx, c, f, tmp, r); err != nil {
		return err
	}
	if c.fsync {
		if err := s.call(ctx, c, "fsync", tmp, f.Sync); err != nil {
			return err
		}
	}
	err = s.call(ctx, c, "close", tmp, f.Close)
	f = nil
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	if replace {
		if err := s.call(ctx, c, "posix-rename", tmp, func() error { return c.sftp.PosixRename(tmp, final) }); err != nil {
			return err
		}
		named = true
		return nil
	}
	err = s.call(ctx, c, "rename", tmp, func() error { return c.sftp.Rename(tmp, final) })
	if err != nil && !errors.Is(err, archive.ErrUnavailable) && ctx.Err() == nil {
		// OpenSSH answers a bare "failure" when the name exists.
		if _, serr := s.stat(ctx, c, final); serr == nil {
			return fs.ErrExist
		}
	}
	if err != nil {
		return err
	}
	named = true
	return nil
}

// write copies r into f with pipelined writes. The I/O timeout runs only
// while Put waits for the server, not while it waits for r.
func (s *Storage) write(ctx context.Context, c *conn, f *sftp.File, tmp string, r io.Reader) error {
	// Cancelling ctx need not close the connection here: src notices it
	// at its next read.
	w := c.watch(context.WithoutCancel(ctx), s.cfg.IOTimeout)
	src := &watchedReader{ctx: ctx, r: r, w: w}
	_, err := f.ReadFromWithConcurrency(src, 0)
	w.stop()
	switch {
	case src.err != nil && ctx.Err() != nil:
		return ctx.Err()
	case src.err != nil:
		return fmt.Errorf("read source: %w", src.err)
	}
	return s.check(ctx, c, "write", tmp, err)
}

// watchedReader is Put's source: it pauses the I/O timeout while reading,
// and stops reading when ctx is done.
type watchedReader struct {
	ctx context.Context
	r   io.Reader
	w   *watch
	err error
}

func (r *watchedReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		r.err = err
		return 0, err
	}
	r.w.pause()
	n, err := r.r.Read(p)
	r.w.resume()
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// discard closes and removes the temporary file of a failed Put. When the
// connection is gone it remembers the file, for removal after reconnecting.
func (s *Storage) discard(c *conn, f *sftp.File, tmp string) {
	ctx := context.Background()
	if f != nil && !c.dead() {
		s.call(ctx, c, "close", tmp, f.Close)
	}
	if !c.dead() {
		err := s.call(ctx, c, "remove", tmp, func() error { return c.sftp.Remove(tmp) })
		if err == nil || archive.IsNotExist(err) {
			return
		}
	}
	s.mu.Lock()
	if len(s.orphans) < 1000 {
		s.orphans = append(s.orphans, tmp)
	}
	s.mu.Unlock()
}

// mkdirAll creates dir and its missing parents below the root. It does not
// create the root itself: a root that disappeared is reported.
func (s *Storage) mkdirAll(ctx context.Context, c *conn, dir string) error {
	if dir == s.cfg.Path {
		return nil
	}
	fi, err := s.stat(ctx, c, dir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return &fs.PathError{Op: "mkdir", Path: s.cfg.Host + ":" + dir, Err: errors.New("not a directory")}
	case !archive.IsNotExist(err):
		return err
	}
	var rel string
	switch root := s.cfg.Path; root {
	case ".":
		rel = dir
	case "/":
		rel = dir[1:]
	default:
		rel = strings.TrimPrefix(dir, root+"/")
	}
	p := s.cfg.Path
	for _, elem := range strings.Split(rel, "/") {
		parent := p
		p = path.Join(p, elem)
		err := s.call(ctx, c, "mkdir", p, func() error { return c.sftp.Mkdir(p) })
		if err == nil {
			// Keep the setgid bit the server's file system gave it.
			dm := archive.DirMode(s.cfg.FileMode)
			fi, err := s.stat(ctx, c, p)
			if err != nil {
				return err
			}
			dm |= fi.Mode() & fs.ModeSetgid
			err = s.call(ctx, c, "chmod", p, func() error { return c.sftp.Chmod(p, dm) })
			if err = s.chmodError(err); err != nil {
				return err
			}
			continue
		}
		if errors.Is(err, archive.ErrUnavailable) || ctx.Err() != nil {
			return err
		}
		// OpenSSH says "failure" for a name that exists: look.
		fi, serr := s.stat(ctx, c, p)
		switch {
		case serr == nil && fi.IsDir():
			continue // made by a concurrent Put
		case serr == nil:
			return &fs.PathError{Op: "mkdir", Path: s.cfg.Host + ":" + p, Err: errors.New("not a directory")}
		case archive.IsNotExist(serr) && parent == s.cfg.Path:
			return &connError{msg: fmt.Sprintf("archive directory %s on %s: %v (was it removed?)", s.cfg.Path, s.addr, err)}
		}
		return err
	}
	return nil
}

// chmodError returns what a failed chmod means for Put: nothing when the
// server answered that it cannot set modes at all (a warning, once; the
// files keep the modes the server gives them), the error otherwise.
func (s *Storage) chmodError(err error) error {
	var se *sftp.StatusError
	if err == nil || !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxOpUnsupported {
		return err
	}
	if !s.noChmod.Swap(true) {
		s.cfg.Logger.Warn("the SFTP server cannot set file modes: archived files get the modes the server gives them",
			"archive", s.name, "file_mode", fmt.Sprintf("%04o", uint32(s.cfg.FileMode)), "err", err)
	}
	return nil
}

func (s *Storage) stat(ctx context.Context, c *conn, p string) (fi os.FileInfo, err error) {
	err = s.call(ctx, c, "stat", p, func() (err error) { fi, err = c.sftp.Stat(p); return err })
	return fi, err
}

// Open opens name for reading; see archive.Storage. The reader's errors are
// sorted like those of the other calls.
func (s *Storage) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := archive.ValidName(name); err != nil {
		return nil, err
	}
	p := s.remote(name)
	var f *sftp.File
	var c *conn
	err := s.do(ctx, "open", p, func(cc *conn) (err error) {
		c = cc
		f, err = c.sftp.Open(p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &reader{s: s, c: c, f: f, p: p}, nil
}

// reader is an open archive file. Each Read asks for up to len(p) bytes at
// once, in pipelined requests, so callers should read in large chunks.
type reader struct {
	s *Storage
	c *conn
	f *sftp.File
	p string
}

func (r *reader) Read(p []byte) (int, error) {
	var n int
	err := r.s.call(context.Background(), r.c, "read", r.p, func() (err error) {
		n, err = r.f.Read(p)
		if err == io.EOF {
			return nil
		}
		return err
	})
	if err == nil && n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, err
}

// ReadAt reads len(p) bytes at off, in one request where they fit (a
// re-push reads the end of a zstd file this way: archive.WALChecksum).
func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	var n int
	err := r.s.call(context.Background(), r.c, "read", r.p, func() (err error) {
		n, err = r.f.ReadAt(p, off)
		if err == io.EOF && n == len(p) {
			return nil
		}
		return err
	})
	return n, err
}

func (r *reader) Close() error {
	if r.c.dead() {
		return nil // nothing to release on the server any more
	}
	return r.s.call(context.Background(), r.c, "close", r.p, r.f.Close)
}

// Stat describes name; see archive.Storage.
func (s *Storage) Stat(ctx context.Context, name string) (archive.FileInfo, error) {
	if err := archive.ValidName(name); err != nil {
		return archive.FileInfo{}, err
	}
	p := s.remote(name)
	var fi os.FileInfo
	err := s.do(ctx, "stat", p, func(c *conn) (err error) { fi, err = c.sftp.Stat(p); return err })
	if err != nil {
		return archive.FileInfo{}, err
	}
	return archive.FileInfo{Name: path.Base(name), Size: fi.Size(), ModTime: fi.ModTime(), Mode: fi.Mode().Perm()}, nil
}

// readDir reads the entries of the archive directory dir ("" is the root)
// in one request sequence, and returns them with the connection and the
// remote path it read. A missing directory has no entries and no error.
func (s *Storage) readDir(ctx context.Context, dir string) (*conn, string, []os.FileInfo, error) {
	p := s.cfg.Path
	if dir != "" {
		if err := archive.ValidName(dir); err != nil {
			return nil, "", nil, err
		}
		p = s.remote(dir)
	}
	c, err := s.conn(ctx)
	if err != nil {
		return nil, "", nil, err
	}
	var entries []os.FileInfo
	err = s.call(ctx, c, "list", p, func() (err error) { entries, err = c.sftp.ReadDirContext(ctx, p); return err })
	if archive.IsNotExist(err) {
		return c, p, nil, nil
	}
	return c, p, entries, err
}

// List returns the regular files in dir; see archive.Storage. Symbolic links
// to regular files count as such, as in the local backend.
func (s *Storage) List(ctx context.Context, dir string) ([]archive.FileInfo, error) {
	c, p, entries, err := s.readDir(ctx, dir)
	if err != nil || entries == nil {
		return nil, err
	}
	dirEntries := make([]fs.DirEntry, len(entries))
	for i, fi := range entries {
		dirEntries[i] = fs.FileInfoToDirEntry(fi)
	}
	return archive.RegularFiles(dirEntries, func(name string) (fs.FileInfo, error) {
		return s.stat(ctx, c, path.Join(p, name))
	})
}

// ListTemp returns the temporary files in dir and below; see
// archive.TempFiles. It lists each directory in one request sequence, as
// List does.
func (s *Storage) ListTemp(ctx context.Context, dir string) ([]archive.TempFile, error) {
	c, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	return archive.CollectTemp(ctx, dir, func(dir string) ([]fs.DirEntry, error) {
		p := s.cfg.Path
		if dir != "" {
			p = s.remote(dir)
		}
		var fis []os.FileInfo
		err := s.call(ctx, c, "list", p, func() (err error) { fis, err = c.sftp.ReadDirContext(ctx, p); return err })
		if err != nil {
			return nil, err
		}
		entries := make([]fs.DirEntry, len(fis))
		for i, fi := range fis {
			entries[i] = fs.FileInfoToDirEntry(fi)
		}
		return entries, nil
	})
}

// RemoveTemp deletes the temporary file name in dir; see archive.TempFiles.
func (s *Storage) RemoveTemp(ctx context.Context, dir, name string) error {
	if err := archive.CheckTempName(dir, name); err != nil {
		return err
	}
	p := path.Join(s.cfg.Path, dir, name)
	return s.do(ctx, "remove", p, func(c *conn) error { return c.sftp.Remove(p) })
}

// Remove deletes name; see archive.Storage.
func (s *Storage) Remove(ctx context.Context, name string) error {
	if err := archive.ValidName(name); err != nil {
		return err
	}
	p := s.remote(name)
	return s.do(ctx, "remove", p, func(c *conn) error { return c.sftp.Remove(p) })
}

// Close closes the connection. Calls after Close fail with fs.ErrClosed.
func (s *Storage) Close() error {
	s.mu.Lock()
	c := s.c
	s.closed, s.c = true, nil
	s.mu.Unlock()
	if c != nil {
		c.kill(fs.ErrClosed)
	}
	return nil
}
