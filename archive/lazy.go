package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Lazy returns a Storage that opens its backend on first use, and again on
// each use until opening succeeds. A restore_command must wait out an
// archive that is not there yet (an NFS server down, a host rebooting)
// instead of failing; with Lazy, failing to open is one more error that the
// caller retries. name is what String returns.
//
// An error from open never matches fs.ErrNotExist, even when it came from a
// missing directory: a missing archive is not a missing file, and a
// restore_command that said "not found" would end recovery.
//
// The Storage is a Watcher, a TempFiles and a DirLister whatever the
// backend will be; their calls fail when it turns out not to be one.
func Lazy(name string, open func(ctx context.Context) (Storage, error)) Storage {
	return &lazy{name: name, open: open}
}

type lazy struct {
	name string
	open func(ctx context.Context) (Storage, error)

	mu sync.Mutex
	st Storage
}

func (l *lazy) get(ctx context.Context) (Storage, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st != nil {
		return l.st, nil
	}
	st, err := l.open(ctx)
	if err != nil {
		return nil, fmt.Errorf("archive %s unavailable: %v", l.name, err)
	}
	l.st = st
	return st, nil
}

func (l *lazy) Put(ctx context.Context, name string, r io.Reader) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.Put(ctx, name, r)
}

func (l *lazy) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.Open(ctx, name)
}

func (l *lazy) Stat(ctx context.Context, name string) (FileInfo, error) {
	st, err := l.get(ctx)
	if err != nil {
		return FileInfo{}, err
	}
	return st.Stat(ctx, name)
}

func (l *lazy) List(ctx context.Context, dir string) ([]FileInfo, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.List(ctx, dir)
}

func (l *lazy) Remove(ctx context.Context, name string) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.Remove(ctx, name)
}

// Watch watches through the backend once it is open; before that it fails,
// and the caller polls.
func (l *lazy) Watch(ctx context.Context, dir string) (<-chan struct{}, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	w, ok := st.(Watcher)
	if !ok {
		return nil, fmt.Errorf("archive %s cannot be watched", l.name)
	}
	return w.Watch(ctx, dir)
}

// ListTemp lists through the backend once it is open; see TempFiles. A
// backend without temporary files to list is an error matching
// errors.ErrUnsupported.
func (l *lazy) ListTemp(ctx context.Context, dir string) ([]TempFile, error) {
	tf, err := l.temp(ctx)
	if err != nil {
		return nil, err
	}
	return tf.ListTemp(ctx, dir)
}

// RemoveTemp removes through the backend once it is open; see ListTemp.
func (l *lazy) RemoveTemp(ctx context.Context, dir, name string) error {
	tf, err := l.temp(ctx)
	if err != nil {
		return err
	}
	return tf.RemoveTemp(ctx, dir, name)
}

func (l *lazy) temp(ctx context.Context) (TempFiles, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	tf, ok := st.(TempFiles)
	if !ok {
		return nil, fmt.Errorf("archive %s cannot list its temporary files: %w", l.name, errors.ErrUnsupported)
	}
	return tf, nil
}

// ListDirs lists through the backend once it is open; see DirLister. A
// backend that cannot list directories is an error matching
// errors.ErrUnsupported.
func (l *lazy) ListDirs(ctx context.Context, dir string) ([]string, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return ListDirs(ctx, st, dir)
}

func (l *lazy) String() string { return l.name }

func (l *lazy) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st == nil {
		return nil
	}
	return l.st.Close()
}
