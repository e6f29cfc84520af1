package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// ErrUnavailable marks an error of a backend that could not reach the
// archive: a connection refused, lost or timed out. The same call may succeed
// when tried again; Retry retries it. Backends make sure such an error never
// matches fs.ErrNotExist, whatever caused it: an unreachable archive is not a
// missing file, and a restore_command that said "not found" would end
// recovery.
var ErrUnavailable = errors.New("archive unavailable")

// Defaults of a RetryPolicy.
const (
	DefaultRetryAttempts   = 4
	DefaultRetryBackoff    = 250 * time.Millisecond
	DefaultRetryMaxBackoff = 4 * time.Second
)

// RetryPolicy says how Retry retries.
type RetryPolicy struct {
	// Attempts is how often a call is made in all, the first included;
	// zero means DefaultRetryAttempts.
	Attempts int
	// Backoff is the pause before the second attempt, doubled before each
	// later one up to MaxBackoff; zero means the defaults.
	Backoff, MaxBackoff time.Duration
	// Logger receives a warning for each retry; nil logs nothing.
	Logger *slog.Logger
	// After is the clock; tests replace it. Nil means time.After.
	After func(time.Duration) <-chan time.Time
}

// Retry returns a Storage that retries the calls of st that fail with an
// error matching ErrUnavailable, with exponential backoff, and returns every
// other error at once: "not found", "exists" and a refused host key do not
// change by asking again. It stops early when ctx is done.
//
// Put is retried only when the data can be read again: when the failed
// attempt read nothing from r yet, or when r is an io.Seeker that seeks back
// to where it started. Otherwise its error is returned and the caller, which
// still has the data, decides (PostgreSQL calls archive_command again). A Put
// whose connection broke after the server renamed the file fails its retry
// with fs.ErrExist, as if another Put had won; callers that push the same
// content twice already treat that as success after comparing.
//
// Readers returned by Open are not retried: a read that fails half-way
// fails.
//
// The Storage is a Watcher, a Moder, a TempFiles and a DirLister when st
// is one; ListTemp, RemoveTemp and ListDirs are retried as List and Remove
// are.
func Retry(st Storage, p RetryPolicy) Storage {
	r := &retry{st: st, p: p}
	if r.p.Attempts <= 0 {
		r.p.Attempts = DefaultRetryAttempts
	}
	if r.p.Backoff <= 0 {
		r.p.Backoff = DefaultRetryBackoff
	}
	if r.p.MaxBackoff <= 0 {
		r.p.MaxBackoff = DefaultRetryMaxBackoff
	}
	if r.p.Logger == nil {
		r.p.Logger = slog.New(slog.DiscardHandler)
	}
	if r.p.After == nil {
		r.p.After = time.After
	}
	var w Watcher
	if _, ok := st.(Watcher); ok {
		w = retryWatcher{r}
	}
	m, _ := st.(Moder)
	var tf TempFiles
	if _, ok := st.(TempFiles); ok {
		tf = retryTemp{r}
	}
	st2 := extend(r, w, m, tf)
	if _, ok := st.(DirLister); ok {
		st2 = extendDirs(st2, retryDirs{r}, w, m, tf)
	}
	return st2
}

// extendDirs adds the DirLister d to st, which extend built from w, m and
// tf, for the combinations walship's backends have (local: all three;
// SFTP: Moder and TempFiles; S3: TempFiles). Another combination keeps st
// as it is, without DirLister.
func extendDirs(st Storage, d DirLister, w Watcher, m Moder, tf TempFiles) Storage {
	switch {
	case w != nil && m != nil && tf != nil:
		return struct {
			Storage
			Watcher
			Moder
			TempFiles
			DirLister
		}{st, w, m, tf, d}
	case w == nil && m != nil && tf != nil:
		return struct {
			Storage
			Moder
			TempFiles
			DirLister
		}{st, m, tf, d}
	case w == nil && m == nil && tf != nil:
		return struct {
			Storage
			TempFiles
			DirLister
		}{st, tf, d}
	case w == nil && m == nil && tf == nil:
		return struct {
			Storage
			DirLister
		}{st, d}
	}
	return st
}

// retryDirs is the DirLister of a retry around one, retried as List is.
type retryDirs struct{ r *retry }

func (d retryDirs) ListDirs(ctx context.Context, dir string) (dirs []string, err error) {
	err = d.r.do(ctx, "list", dir, func() error { dirs, err = d.r.st.(DirLister).ListDirs(ctx, dir); return err }, nil)
	return dirs, err
}

// extend returns st with the optional interfaces among w, m and tf that
// are not nil: a type assertion on the result finds exactly those.
func extend(st Storage, w Watcher, m Moder, tf TempFiles) Storage {
	switch {
	case w != nil && m != nil && tf != nil:
		return struct {
			Storage
			Watcher
			Moder
			TempFiles
		}{st, w, m, tf}
	case m != nil && tf != nil:
		return struct {
			Storage
			Moder
			TempFiles
		}{st, m, tf}
	case w != nil && tf != nil:
		return struct {
			Storage
			Watcher
			TempFiles
		}{st, w, tf}
	case w != nil && m != nil:
		return struct {
			Storage
			Watcher
			Moder
		}{st, w, m}
	case w != nil:
		return struct {
			Storage
			Watcher
		}{st, w}
	case m != nil:
		return struct {
			Storage
			Moder
		}{st, m}
	case tf != nil:
		return struct {
			Storage
			TempFiles
		}{st, tf}
	}
	return st
}

type retry struct {
	st Storage
	p  RetryPolicy
}

// do calls fn until it succeeds, fails for good, or runs out of attempts.
// again, if not nil, says whether a failed attempt may be repeated.
func (r *retry) do(ctx context.Context, op, name string, fn func() error, again func() bool) error {
	backoff := r.p.Backoff
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !errors.Is(err, ErrUnavailable) || attempt >= r.p.Attempts || ctx.Err() != nil {
			return err
		}
		if again != nil && !again() {
			return err
		}
		// One warning per call: a restore_command waiting out an outage
		// calls again and again, and logs its own failures.
		level := slog.LevelWarn
		if attempt > 1 {
			level = slog.LevelDebug
		}
		r.p.Logger.Log(ctx, level, "archive unavailable, retrying", "op", op, "path", name,
			"attempt", attempt, "retry_in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up waiting to retry: %w)", err, ctx.Err())
		case <-r.p.After(backoff):
		}
		backoff = min(2*backoff, r.p.MaxBackoff)
	}
}

func (r *retry) Put(ctx context.Context, name string, src io.Reader) error {
	cr := &CountingReader{R: src}
	start := int64(-1)
	seeker, _ := src.(io.Seeker)
	if seeker != nil {
		if off, err := seeker.Seek(0, io.SeekCurrent); err == nil {
			start = off
		}
	}
	again := func() bool {
		if cr.N == 0 {
			return true
		}
		if start < 0 {
			return false
		}
		if _, err := seeker.Seek(start, io.SeekStart); err != nil {
			return false
		}
		cr.N = 0
		return true
	}
	return r.do(ctx, "put", name, func() error { return r.st.Put(ctx, name, cr) }, again)
}

func (r *retry) Open(ctx context.Context, name string) (rc io.ReadCloser, err error) {
	err = r.do(ctx, "open", name, func() error { rc, err = r.st.Open(ctx, name); return err }, nil)
	return rc, err
}

func (r *retry) Stat(ctx context.Context, name string) (fi FileInfo, err error) {
	err = r.do(ctx, "stat", name, func() error { fi, err = r.st.Stat(ctx, name); return err }, nil)
	return fi, err
}

func (r *retry) List(ctx context.Context, dir string) (fis []FileInfo, err error) {
	err = r.do(ctx, "list", dir, func() error { fis, err = r.st.List(ctx, dir); return err }, nil)
	return fis, err
}

// Remove is retried like the others. A retry after a connection broke
// behind a successful remove reports fs.ErrNotExist for a file that this
// very call removed, which callers that remove (cleanup) take as done.
func (r *retry) Remove(ctx context.Context, name string) error {
	return r.do(ctx, "remove", name, func() error { return r.st.Remove(ctx, name) }, nil)
}

func (r *retry) String() string { return r.st.String() }
func (r *retry) Close() error   { return r.st.Close() }

// retryWatcher is the Watcher of a retry around one; Watch is not retried,
// since a caller that cannot watch polls.
type retryWatcher struct{ r *retry }

func (w retryWatcher) Watch(ctx context.Context, dir string) (<-chan struct{}, error) {
	return w.r.st.(Watcher).Watch(ctx, dir)
}

// retryTemp is the TempFiles of a retry around one.
type retryTemp struct{ r *retry }

func (t retryTemp) ListTemp(ctx context.Context, dir string) (fis []TempFile, err error) {
	err = t.r.do(ctx, "list", dir, func() error { fis, err = t.r.st.(TempFiles).ListTemp(ctx, dir); return err }, nil)
	return fis, err
}

func (t retryTemp) RemoveTemp(ctx context.Context, dir, name string) error {
	return t.r.do(ctx, "remove", dir+"/"+name, func() error { return t.r.st.(TempFiles).RemoveTemp(ctx, dir, name) }, nil)
}

// CountingReader counts the bytes read through it: Retry, to know whether
// a failed Put consumed any of its input; a backup, to know what it stored.
type CountingReader struct {
	R io.Reader
	N int64
}

func (c *CountingReader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N += int64(n)
	return n, err
}
