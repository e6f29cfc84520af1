package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"
)

// Storage is the one interface every archive backend implements. Its doc
// comments are the contract; archivetest.Run checks every backend against it.
//
// Names are slash-separated paths relative to the archive root, such as
// "walship.json" or "wal/000000010000000000000001.zst". Every method rejects a
// name that ValidName rejects, before touching the backend.
//
// Methods may be called concurrently. A backend does not retry: retries,
// timeouts and logging are wrappers around a Storage.
type Storage interface {
	// Put stores the bytes of r under name, creating parent directories as
	// needed. It is atomic and durable: the data is written under a temporary
	// name that List never shows, flushed to stable storage, and only then
	// given its final name; the directory is flushed too where the backend can.
	// When Put returns nil the file survives a crash; when it returns an
	// error no file exists under name that was not there before.
	//
	// Put never replaces a file. If name exists already, or another Put of the
	// same name wins a race, Put returns an error matching fs.ErrExist and
	// leaves the existing file untouched. An error returned by r aborts Put
	// with that error wrapped. Put also aborts, with an error matching
	// ctx.Err(), when ctx is done before the file has its final name; it
	// notices between reads of r, so a reader that may block for long should
	// watch ctx itself.
	Put(ctx context.Context, name string, r io.Reader) error

	// Open opens name for reading. A missing file returns an error matching
	// fs.ErrNotExist. A file is never seen half-written under its name.
	Open(ctx context.Context, name string) (io.ReadCloser, error)

	// Stat describes name. A missing file returns an error matching
	// fs.ErrNotExist.
	Stat(ctx context.Context, name string) (FileInfo, error)

	// List returns the regular files directly inside dir ("" is the root),
	// sorted by name. Temporary files of Puts in progress are not listed. A
	// missing dir is an empty list, not an error.
	List(ctx context.Context, dir string) ([]FileInfo, error)

	// Remove deletes name. A missing file returns an error matching
	// fs.ErrNotExist. Remove also deletes an empty directory (the tail
	// directory of a segment, once its increments are gone); a directory
	// that still holds files is left as it is, and Remove returns an error.
	Remove(ctx context.Context, name string) error

	// String names the archive for log messages, without credentials.
	String() string

	// Close releases the backend's resources (connections, watchers).
	Close() error
}

// FileInfo describes one file of an archive.
type FileInfo struct {
	Name    string    // base name, without the directory
	Size    int64     // bytes as stored (compressed size for compressed files)
	ModTime time.Time // last modification, as the backend reports it
	// Mode holds the file's permission bits where the backend reports them
	// (every Moder does), and is zero otherwise.
	Mode fs.FileMode
}

// Moder is implemented by backends that give what they create permission
// bits of their own choosing, whatever the umask of the process (or of the
// server) says, and report them in FileInfo.Mode.
type Moder interface {
	// FileMode returns the permission bits that Put gives every file it
	// stores; a directory it creates gets DirMode(FileMode()), and keeps
	// the setgid bit it inherits from its parent. Directories that exist
	// already, the root among them, keep their modes.
	FileMode() fs.FileMode
}

// TempFiles is implemented by backends whose temporary files can be found
// and removed. A Put writes its data under a temporary name that List never
// shows (TempName), and gives it its final name at the end; a process
// killed in between leaves that file behind, hidden, for good. Nothing reads
// such a file, but it takes space: cleanup and expire remove the old ones.
//
// A temporary file whose Put is still running is listed too, and removing
// it makes that Put fail: callers tell the two apart by age, as a running
// Put keeps writing to its file.
type TempFiles interface {
	// ListTemp returns the temporary files in dir ("" is the root) and in
	// every directory below it, sorted by directory and then by name. Only
	// regular files whose name IsTempName accepts are listed; directories
	// whose name starts with "." (a file server's .snapshot), symbolic
	// links, and directories below dir that walship may not read (a file
	// system's lost+found) are not entered. A missing dir is an empty
	// list, not an error.
	// Wrappers whose backend turns out to have no temporary files to list
	// return an error matching errors.ErrUnsupported.
	ListTemp(ctx context.Context, dir string) ([]TempFile, error)

	// RemoveTemp deletes the temporary file name (a base name, as ListTemp
	// reports it) in the directory dir. A name that IsTempName rejects, or
	// a dir that ValidName rejects, returns ErrInvalidName before the
	// backend is touched; a missing file returns an error matching
	// fs.ErrNotExist. Unlike Remove, it need not flush the directory: a
	// temporary file that comes back after a crash is removed again.
	RemoveTemp(ctx context.Context, dir, name string) error
}

// TempFile is one temporary file, as TempFiles.ListTemp reports it.
type TempFile struct {
	// Dir is the archive name of its directory, "" for the root.
	Dir string
	// FileInfo describes it; its Name is the hidden name as stored.
	FileInfo
}

// Path returns where f is, relative to the archive root, for messages.
func (f TempFile) Path() string {
	if f.Dir == "" {
		return f.Name
	}
	return f.Dir + "/" + f.Name
}

// Watcher is implemented by backends that can report new files without
// polling (the local backend through inotify). Callers fall back to polling
// for backends without it.
type Watcher interface {
	// Watch returns a channel that receives a value, coalesced, whenever a
	// file may have appeared in dir, until ctx is done; then the channel is
	// closed. It returns an error when the backend cannot watch dir; the
	// caller then polls.
	//
	// A value is a hint to look again, not a promise that the file is
	// there. Callers still poll at a slow interval, since a watch can go
	// deaf without telling, for example when dir is removed and recreated.
	Watch(ctx context.Context, dir string) (<-chan struct{}, error)
}

// Replacer is implemented by backends that can replace a file in one
// atomic step. Only maintenance that rewrites files in place (a new
// encryption key) uses it; everything else stores with Put, which never
// replaces.
type Replacer interface {
	// Replace stores the bytes of r under name, which exists, as Put
	// stores a new file: written under a temporary name, flushed, and
	// given the name in one step, so that a reader sees the old content or
	// the new one and never no file. A missing name returns an error
	// matching fs.ErrNotExist, and any error leaves the old file as it was.
	Replace(ctx context.Context, name string, r io.Reader) error
}

// Encoding is implemented by Storage wrappers that store every file
// transformed (encrypted, say), so that FileInfo.Size is the size as
// stored, larger than what Put was given.
type Encoding interface {
	// Encodes reports whether the files are stored transformed.
	Encodes() bool
}

// ErrInvalidName is returned for a name that does not stay inside the archive.
var ErrInvalidName = errors.New("invalid archive file name")

// ValidName reports whether name is a clean relative path inside the archive:
// not empty, not absolute, no empty, "." or ".." elements, no backslashes or
// NUL bytes, and no element starting with "." (reserved for temporary files).
func ValidName(name string) error {
	if name == "" || len(name) > 1024 || strings.HasPrefix(name, "/") ||
		strings.ContainsAny(name, "\\\x00") {
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	for _, elem := range strings.Split(name, "/") {
		if elem == "" || strings.HasPrefix(elem, ".") {
			return fmt.Errorf("%w: %q", ErrInvalidName, name)
		}
	}
	return nil
}

// IsNotExist reports whether err says a file is missing.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// IsExist reports whether err says a file exists already.
func IsExist(err error) bool { return errors.Is(err, fs.ErrExist) }

// RegularFiles turns a directory listing into what Storage.List returns,
// for backends to share: hidden names (temporary files in the making) left
// out, symbolic links followed with stat (a link to a regular file counts as
// one, as it does for Open), anything but a regular file dropped, entries
// removed since the listing skipped, sorted by name.
func RegularFiles(entries []fs.DirEntry, stat func(name string) (fs.FileInfo, error)) ([]FileInfo, error) {
	var files []FileInfo
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		var fi fs.FileInfo
		var err error
		switch {
		case e.Type().IsRegular():
			fi, err = e.Info()
		case e.Type()&fs.ModeSymlink != 0:
			fi, err = stat(e.Name())
		default:
			continue
		}
		if IsNotExist(err) {
			continue // removed since the listing, or a dangling link
		}
		if err != nil {
			return nil, err
		}
		if fi.Mode().IsRegular() {
			files = append(files, FileInfo{Name: e.Name(), Size: fi.Size(), ModTime: fi.ModTime(), Mode: fi.Mode().Perm()})
		}
	}
	slices.SortFunc(files, func(a, b FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return files, nil
}
