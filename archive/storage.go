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
			files = append(files, FileInfo{Name: e.Name(), Size: fi.Size(), ModTime: fi.ModTime()})
		}
	}
	slices.SortFunc(files, func(a, b FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return files, nil
}
