package trigger

import (
	"io/fs"
	"os"
	"syscall"
	"time"
)

// DefaultSettle is how long a trigger file must stay empty before a Reader
// takes it as a smart trigger.
const DefaultSettle = time.Second

// Reader reads the trigger file of a waiting restore command. It differs
// from Read in one way: a file found empty counts as Smart only once it has
// stayed empty, the same file, unmodified, for Settle. "echo fast > file"
// and "echo nonsense > file" create the file empty and write it a moment
// later; a watcher woken by the creation would otherwise read the empty file
// and fail over smart, where the operator asked for fast, or for nothing.
// An empty file made on purpose (touch file) still means smart, a second
// later. Files with content, and files renamed into place as Write does,
// are taken at once.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	// Path is the trigger file.
	Path string
	// Settle is how long an empty file must stay so; zero means
	// DefaultSettle.
	Settle time.Duration
	// Now is the clock; tests replace it.
	Now func() time.Time

	empty     fs.FileInfo // the empty file last seen, or nil
	emptySeen time.Time   // when it was first seen
}

// Mode returns what the trigger asks for now, and an error as Read does.
// When the file is empty and has not settled yet, Mode returns None and how
// long to wait before asking again.
func (r *Reader) Mode() (m Mode, recheck time.Duration, err error) {
	m, fi, err := read(r.Path)
	if _, isEmpty := fi.(emptyFile); !isEmpty || err != nil {
		r.empty = nil
		return m, 0, err
	}
	now := r.now()
	if r.empty == nil || !sameEmptyFile(r.empty, fi) {
		r.empty, r.emptySeen = fi, now
	}
	if left := r.settle() - now.Sub(r.emptySeen); left > 0 {
		return None, left, nil
	}
	return m, 0, nil
}

// sameEmptyFile reports whether a and b are the same file, unchanged.
func sameEmptyFile(a, b fs.FileInfo) bool {
	if !os.SameFile(a.(emptyFile).FileInfo, b.(emptyFile).FileInfo) || !a.ModTime().Equal(b.ModTime()) {
		return false
	}
	sa, okA := a.Sys().(*syscall.Stat_t)
	sb, okB := b.Sys().(*syscall.Stat_t)
	return okA && okB && sa.Ctim == sb.Ctim
}

func (r *Reader) settle() time.Duration {
	if r.Settle > 0 {
		return r.Settle
	}
	return DefaultSettle
}

func (r *Reader) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}
