// Package local is the archive backend for a directory of the local file
// system, including NFS mounts.
//
// Put writes each file under a hidden temporary name in the file's own
// directory (".<name>.tmp.<random hex>"), fsyncs it, and gives it its final
// name with renameat2(RENAME_NOREPLACE), falling back to link(2) and unlink(2)
// where the file system or kernel lacks that flag (NFS, kernels before 3.15).
// Both fail rather than replace a file that exists, which is how two walship
// processes pushing the same segment can never overwrite each other.
//
// Put gives every file the mode of Config.FileMode (0640 by default) with
// fchmod(2) before its data is written, and every directory it creates
// archive.DirMode of it (0750) with chmod(2), keeping a setgid bit it
// inherited: PostgreSQL runs archive_command under umask 077, which would
// leave the archive readable by its owner only. Directories that exist
// already, the root among them, keep their mode.
//
// A process killed during a Put leaves its temporary file behind. It stays
// hidden: List never shows names starting with ".", and the random suffix
// keeps it from colliding with later Puts. ListTemp finds such files and
// RemoveTemp removes them (walship cleanup and expire remove the old ones).
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"github.com/walship/walship/archive"
)

// Config says where a local archive is and how to write into it.
type Config struct {
	// Root is the archive's directory. It must exist: walship does not
	// create it, because a typo in archive_command would otherwise
	// silently start a new, empty archive.
	Root string
	// FileMode is the permission bits of the files Put stores; the
	// directories it creates get archive.DirMode of it. Zero means
	// archive.DefaultFileMode; archive.CheckFileMode says which are valid.
	FileMode fs.FileMode
}

// Storage is an archive in a local directory.
type Storage struct {
	root     string
	fileMode fs.FileMode
	dirMode  fs.FileMode

	// renameNoReplace gives a file its final name without replacing one
	// that exists. Tests swap it to exercise the link(2) fallback.
	renameNoReplace func(oldpath, newpath string) error

	// owner, when set, is the uid and gid every file and directory walship
	// creates is given: the archive root's, when walship runs as root in
	// an archive someone else owns. A backup taken by root from cron must
	// stay readable, and removable, by the PostgreSQL user's commands.
	owner *[2]int

	mu       sync.Mutex
	watchers map[*fsnotify.Watcher]struct{}
	closed   bool
}

var (
	_ archive.Storage   = (*Storage)(nil)
	_ archive.Watcher   = (*Storage)(nil)
	_ archive.Moder     = (*Storage)(nil)
	_ archive.TempFiles = (*Storage)(nil)
)

// New returns the archive in the directory root, which must exist, with
// the default Config.
func New(root string) (*Storage, error) { return Open(Config{Root: root}) }

// Open returns the archive that cfg describes.
func Open(cfg Config) (*Storage, error) {
	mode := cfg.FileMode
	if mode == 0 {
		mode = archive.DefaultFileMode
	}
	if err := archive.CheckFileMode(mode); err != nil {
		return nil, err
	}
	root := filepath.Clean(cfg.Root)
	fi, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("archive directory %s does not exist: create it, owned by the user PostgreSQL runs as", root)
	case err != nil:
		return nil, fmt.Errorf("archive directory %s: %w", root, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("archive %s is not a directory", root)
	}
	s := &Storage{root: root, fileMode: mode, dirMode: archive.DirMode(mode), renameNoReplace: renameat2NoReplace}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 && st.Uid != 0 {
		s.owner = &[2]int{int(st.Uid), int(st.Gid)}
	}
	return s, nil
}

// own gives path the archive root's owner when walship runs as root; see
// Storage.owner.
func (s *Storage) own(path string) error {
	if s.owner == nil {
		return nil
	}
	return os.Lchown(path, s.owner[0], s.owner[1])
}

// String returns the archive's root directory.
func (s *Storage) String() string { return s.root }

// FileMode returns the permission bits of the files Put stores; see
// archive.Moder.
func (s *Storage) FileMode() fs.FileMode { return s.fileMode }

// path returns the local path of an archive name that ValidName accepted.
func (s *Storage) path(name string) string {
	return filepath.Join(s.root, filepath.FromSlash(name))
}

// bufPool holds Put's copy buffers: 1 MiB makes few syscalls per WAL
// segment, and is too large to allocate for every Put.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// Put stores r under name; see archive.Storage. A cancelled ctx is noticed
// between reads of r; a Read that blocks forever blocks Put forever.
func (s *Storage) Put(ctx context.Context, name string, r io.Reader) error {
	return s.store(ctx, name, r, false)
}

// Replace replaces the file name with the bytes of r; see archive.Replacer.
func (s *Storage) Replace(ctx context.Context, name string, r io.Reader) error {
	return s.store(ctx, name, r, true)
}

// store is Put, or Replace when replace is set.
func (s *Storage) store(ctx context.Context, name string, r io.Reader, replace bool) (err error) {
	if err := archive.ValidName(name); err != nil {
		return err
	}
	final := s.path(name)
	if replace {
		if fi, err := os.Stat(final); err != nil {
			return fmt.Errorf("replace %s: %w", final, err)
		} else if !fi.Mode().IsRegular() {
			return fmt.Errorf("replace %s: not a regular file", final)
		}
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("put %s: %w", final, s.explain(err))
		}
	}()
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(final)
	if err := s.mkdirAll(dir); err != nil {
		return err
	}

	tmp := filepath.Join(dir, archive.TempName(filepath.Base(final)))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, s.fileMode)
	if err != nil {
		return err
	}
	linked := false
	defer func() {
		if !linked {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := s.own(tmp); err != nil {
		return err
	}
	// The umask took bits away at creation; the mode is meant as it is.
	if err := f.Chmod(s.fileMode); err != nil {
		return err
	}
	if err := copyCtx(ctx, f, r); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	if replace {
		if err := os.Rename(tmp, final); err != nil {
			return err
		}
		linked = true
		return syncDir(dir)
	}
	op, err := "rename", s.renameNoReplace(tmp, final)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		// No RENAME_NOREPLACE here. link(2) fails with EEXIST just the
		// same, and is atomic on NFS too; the temp name then goes.
		op, err = "link", unix.Link(tmp, final)
		if errors.Is(err, unix.EEXIST) && sameFile(tmp, final) {
			err = nil // an NFS retransmission of our own link
		}
		if err == nil {
			os.Remove(tmp)
		}
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("link %s: %w: the file system has neither renameat2(RENAME_NOREPLACE) nor hard links, "+
				"and walship needs one of them to store files without ever replacing one", tmp, errors.ErrUnsupported)
		}
	}
	if errors.Is(err, unix.EEXIST) {
		return fs.ErrExist
	}
	if err != nil {
		return &fs.PathError{Op: op, Path: tmp, Err: err}
	}
	linked = true
	if err := syncDir(dir); err != nil {
		// The file is complete but its name might not survive a crash; a
		// caller told of success would then lose it. Take it back so the
		// caller retries.
		os.Remove(final)
		return err
	}
	return nil
}

// copyCtx copies r to f, checking ctx between reads so that a cancelled
// Put of a large file stops early. An archive.FramesWriter (compressed WAL)
// writes straight into f instead, without a copy buffer between, and may
// hand f several buffers at once (writev(2)).
func copyCtx(ctx context.Context, f *os.File, r io.Reader) error {
	if fr, ok := r.(archive.FramesWriter); ok {
		fw := &fileWriter{ctx: ctx, f: f}
		_, err := fr.WriteFramesTo(fw)
		switch {
		case err == nil:
			return nil
		case fw.err != nil && errors.Is(err, fw.err):
			return err
		}
		return fmt.Errorf("read source: %w", err)
	}
	var w io.Writer = f
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read source: %w", rerr)
		}
	}
}

// fileWriter writes to f for copyCtx, failing once ctx is done, and
// remembers its own failure, which copyCtx tells apart from the source's.
type fileWriter struct {
	ctx context.Context
	f   *os.File
	err error
}

func (w *fileWriter) Write(p []byte) (int, error) {
	if w.err = w.ctx.Err(); w.err != nil {
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.err = err
	return n, err
}

// WriteBuffers writes bufs with writev(2), as many as one call takes, until
// all are written; see archive.BuffersWriter.
func (w *fileWriter) WriteBuffers(bufs [][]byte) (int64, error) {
	if w.err = w.ctx.Err(); w.err != nil {
		return 0, w.err
	}
	rc, err := w.f.SyscallConn()
	if err != nil {
		w.err = err
		return 0, err
	}
	var total int64
	bufs = slices.Clone(bufs) // trimmed below as they are written
	for {
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
		if len(bufs) == 0 {
			return total, nil
		}
		var n int
		var werr error
		if err := rc.Write(func(fd uintptr) bool {
			n, werr = unix.Writev(int(fd), bufs[:min(len(bufs), 1024)]) // IOV_MAX
			return werr != unix.EAGAIN
		}); err != nil {
			werr = err
		}
		if werr == unix.EINTR {
			continue
		}
		if werr != nil {
			w.err = &fs.PathError{Op: "write", Path: w.f.Name(), Err: werr}
			return total, w.err
		}
		if n == 0 {
			w.err = &fs.PathError{Op: "write", Path: w.f.Name(), Err: io.ErrShortWrite}
			return total, w.err
		}
		total += int64(n)
		for n > 0 && len(bufs) > 0 {
			if n < len(bufs[0]) {
				bufs[0] = bufs[0][n:]
				n = 0
				break
			}
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
	}
}

// mkdirAll creates dir and its missing parents inside the root, fsyncing the
// parent of each directory it creates, so that a file Put into a new
// directory survives a crash along with the directory's name.
func (s *Storage) mkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	rel, err := filepath.Rel(s.root, dir)
	if err != nil || rel == "." {
		return s.checkRoot()
	}
	p := s.root
	for _, elem := range strings.Split(rel, string(filepath.Separator)) {
		parent := p
		p = filepath.Join(p, elem)
		err := os.Mkdir(p, s.dirMode)
		switch {
		case errors.Is(err, fs.ErrExist):
			if fi, err := os.Stat(p); err != nil {
				return err
			} else if !fi.IsDir() {
				return &fs.PathError{Op: "mkdir", Path: p, Err: syscall.ENOTDIR}
			}
		case errors.Is(err, fs.ErrNotExist) && parent == s.root:
			return s.checkRoot()
		case err != nil:
			return err
		default:
			if err := s.own(p); err != nil {
				return err
			}
			if err := chmodDir(p, s.dirMode); err != nil {
				return err
			}
		}
		// Also after EEXIST: a concurrent Put may have created p and not
		// yet fsynced its parent.
		if err := syncDir(parent); err != nil {
			return err
		}
	}
	return nil
}

// chmodDir gives the new directory p mode, keeping the setgid bit it
// inherited from its parent: in an archive made group-owned with chmod
// g+s, files keep getting that group.
func chmodDir(p string, mode fs.FileMode) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	return os.Chmod(p, mode|fi.Mode()&fs.ModeSetgid)
}

// checkRoot explains a root that disappeared after New, instead of letting
// Put recreate it.
func (s *Storage) checkRoot() error {
	if _, err := os.Stat(s.root); err != nil {
		return fmt.Errorf("archive directory %s: %w (was it unmounted or removed?)", s.root, err)
	}
	return nil
}

// syncDir flushes a directory, so the names in it survive a crash. File
// systems that cannot fsync a directory say EINVAL; their names are then as
// durable as they can be.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTSUP) {
		err = nil
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func sameFile(a, b string) bool {
	ai, aerr := os.Stat(a)
	bi, berr := os.Stat(b)
	return aerr == nil && berr == nil && os.SameFile(ai, bi)
}

func renameat2NoReplace(oldpath, newpath string) error {
	return unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
}

// explain adds what to do to the errors an operator can fix, keeping the
// cause matchable with errors.Is.
func (s *Storage) explain(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("archive %s is full, free space or enlarge it: %w", s.root, err)
	case errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("archive %s is over its disk quota: %w", s.root, err)
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("archive %s is read-only, remount it read-write: %w", s.root, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: the archive must be writable by the user PostgreSQL runs as", err)
	}
	return err
}

// Open opens name for reading; see archive.Storage.
func (s *Storage) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := archive.ValidName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(name))
	if err != nil {
		return nil, err // not a nil *os.File in a non-nil interface
	}
	return f, nil
}

// Stat describes name; see archive.Storage.
func (s *Storage) Stat(ctx context.Context, name string) (archive.FileInfo, error) {
	if err := archive.ValidName(name); err != nil {
		return archive.FileInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return archive.FileInfo{}, err
	}
	fi, err := os.Stat(s.path(name))
	if err != nil {
		return archive.FileInfo{}, err
	}
	return archive.FileInfo{Name: fi.Name(), Size: fi.Size(), ModTime: fi.ModTime(), Mode: fi.Mode().Perm()}, nil
}

// readDir reads the entries of the archive directory dir ("" is the root),
// sorted by name, and returns them with the directory's path. A missing
// directory has no entries and no error.
func (s *Storage) readDir(ctx context.Context, dir string) (string, []fs.DirEntry, error) {
	p := s.root
	if dir != "" {
		if err := archive.ValidName(dir); err != nil {
			return "", nil, err
		}
		p = s.path(dir)
	}
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	entries, err := os.ReadDir(p)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil, nil
	}
	return p, entries, err
}

// List returns the regular files directly inside dir; see archive.Storage.
// Symbolic links to regular files count as files, as they do for Open.
func (s *Storage) List(ctx context.Context, dir string) ([]archive.FileInfo, error) {
	p, entries, err := s.readDir(ctx, dir)
	if err != nil || entries == nil {
		return nil, err
	}
	return archive.RegularFiles(entries, func(name string) (fs.FileInfo, error) {
		return os.Stat(filepath.Join(p, name))
	})
}

// Remove deletes name and flushes its directory; see archive.Storage.
func (s *Storage) Remove(ctx context.Context, name string) error {
	if err := archive.ValidName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := s.path(name)
	if err := os.Remove(p); err != nil {
		return err
	}
	return syncDir(filepath.Dir(p))
}

// ListTemp returns the temporary files in dir and below; see
// archive.TempFiles.
func (s *Storage) ListTemp(ctx context.Context, dir string) ([]archive.TempFile, error) {
	return archive.CollectTemp(ctx, dir, func(dir string) ([]fs.DirEntry, error) {
		return os.ReadDir(s.path(dir))
	})
}

// RemoveTemp deletes the temporary file name in dir; see archive.TempFiles.
func (s *Storage) RemoveTemp(ctx context.Context, dir, name string) error {
	if err := archive.CheckTempName(dir, name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return os.Remove(filepath.Join(s.path(dir), name))
}

// networkFS names the file systems whose changes by other hosts inotify does
// not see. Watching them would wait forever for a file another host wrote.
var networkFS = map[uint32]string{
	unix.NFS_SUPER_MAGIC:   "NFS",
	unix.SMB_SUPER_MAGIC:   "SMB",
	unix.SMB2_SUPER_MAGIC:  "SMB",
	unix.CIFS_SUPER_MAGIC:  "CIFS",
	unix.FUSE_SUPER_MAGIC:  "FUSE",
	unix.CEPH_SUPER_MAGIC:  "CephFS",
	unix.AFS_SUPER_MAGIC:   "AFS",
	unix.V9FS_MAGIC:        "9P",
	unix.CODA_SUPER_MAGIC:  "Coda",
	unix.OCFS2_SUPER_MAGIC: "OCFS2",
	0x01161970:             "GFS2",
	0x0bd00bd0:             "Lustre",
}

// Watch reports files appearing in dir through inotify; see archive.Watcher.
// It creates dir if it is missing. On network file systems it returns an
// error, since inotify sees only this host's changes there, and the caller
// polls. The channel is closed when ctx is done or the Storage is closed.
//
// Events for hidden temporary files are dropped, so a Put in progress does
// not wake the caller for every chunk it writes; its final name does.
func (s *Storage) Watch(ctx context.Context, dir string) (<-chan struct{}, error) {
	p := s.root
	if dir != "" {
		if err := archive.ValidName(dir); err != nil {
			return nil, err
		}
		p = s.path(dir)
	}
	if err := s.mkdirAll(p); err != nil {
		return nil, fmt.Errorf("watch %s: %w", p, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return nil, fmt.Errorf("watch %s: %w", p, err)
	}
	if fsName, ok := networkFS[uint32(st.Type)]; ok {
		return nil, fmt.Errorf("watch %s: on %s, inotify does not see files written by other hosts", p, fsName)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", p, err)
	}
	if err := w.Add(p); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch %s: %w", p, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		w.Close()
		return nil, fmt.Errorf("watch %s: %w", p, fs.ErrClosed)
	}
	if s.watchers == nil {
		s.watchers = make(map[*fsnotify.Watcher]struct{})
	}
	s.watchers[w] = struct{}{}
	s.mu.Unlock()

	ch := make(chan struct{}, 1)
	notify := func() {
		select {
		case ch <- struct{}{}:
		default: // a signal is pending already; the caller looks once for both
		}
	}
	go func() {
		defer func() {
			w.Close()
			s.mu.Lock()
			delete(s.watchers, w)
			s.mu.Unlock()
			close(ch)
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return // Close closed the watcher
				}
				switch {
				case ev.Name == p:
					notify() // dir itself removed or moved: look once more
				case strings.HasPrefix(filepath.Base(ev.Name), "."):
				case ev.Has(fsnotify.Create) || ev.Has(fsnotify.Rename) || ev.Has(fsnotify.Write):
					notify()
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
				// Most likely an overflow: events were lost, so a file
				// may have appeared.
				notify()
			}
		}
	}()
	return ch, nil
}

// Close stops all watches; their channels close. The Storage stays usable
// for everything but Watch.
func (s *Storage) Close() error {
	s.mu.Lock()
	s.closed = true
	ws := make([]*fsnotify.Watcher, 0, len(s.watchers))
	for w := range s.watchers {
		ws = append(ws, w)
	}
	s.mu.Unlock()
	for _, w := range ws {
		w.Close()
	}
	return nil
}
