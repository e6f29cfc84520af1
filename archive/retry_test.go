package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"
)

// flaky is a Storage whose calls fail with errs, one per call, before they
// succeed. Put reads its input before failing.
type flaky struct {
	errs  []error
	calls int
	put   []byte // what the last successful Put read
	read  int    // bytes a failing Put reads first
}

func (f *flaky) next() error {
	f.calls++
	if len(f.errs) == 0 {
		return nil
	}
	err := f.errs[0]
	f.errs = f.errs[1:]
	return err
}

func (f *flaky) Put(_ context.Context, _ string, r io.Reader) error {
	if err := f.next(); err != nil {
		io.CopyN(io.Discard, r, int64(f.read))
		return err
	}
	b, err := io.ReadAll(r)
	f.put = b
	return err
}

func (f *flaky) Open(context.Context, string) (io.ReadCloser, error) {
	if err := f.next(); err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader("x")), nil
}

func (f *flaky) Stat(context.Context, string) (FileInfo, error) { return FileInfo{}, f.next() }

func (f *flaky) List(context.Context, string) ([]FileInfo, error) { return nil, f.next() }

func (f *flaky) Remove(context.Context, string) error { return f.next() }

func (f *flaky) String() string { return "flaky" }
func (f *flaky) Close() error   { return nil }

var errDown = fmt.Errorf("connect: connection refused: %w", ErrUnavailable)

// instant is a clock that never waits, and counts the waits.
type instant struct{ waits []time.Duration }

func (c *instant) After(d time.Duration) <-chan time.Time {
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	ch <- time.Time{}
	return ch
}

func newRetry(f *flaky, attempts int) (Storage, *instant) {
	clock := &instant{}
	return Retry(f, RetryPolicy{Attempts: attempts, Backoff: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, After: clock.After}), clock
}

func TestRetry(t *testing.T) {
	ctx := context.Background()
	calls := map[string]func(Storage) error{
		"Stat":   func(s Storage) error { _, err := s.Stat(ctx, "a"); return err },
		"List":   func(s Storage) error { _, err := s.List(ctx, "a"); return err },
		"Remove": func(s Storage) error { return s.Remove(ctx, "a") },
		"Open": func(s Storage) error {
			r, err := s.Open(ctx, "a")
			if err == nil {
				r.Close()
			}
			return err
		},
		"Put": func(s Storage) error { return s.Put(ctx, "a", strings.NewReader("data")) },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			f := &flaky{errs: []error{errDown, errDown, errDown}}
			s, clock := newRetry(f, 5)
			if err := call(s); err != nil {
				t.Errorf("after 3 failures: got %v, want nil", err)
			}
			if f.calls != 4 {
				t.Errorf("calls: got %d, want 4", f.calls)
			}
			if want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}; fmt.Sprint(clock.waits) != fmt.Sprint(want) {
				t.Errorf("backoff: got %v, want %v", clock.waits, want)
			}

			f = &flaky{errs: []error{errDown, errDown, errDown}}
			s, _ = newRetry(f, 3)
			if err := call(s); !errors.Is(err, ErrUnavailable) {
				t.Errorf("after 3 of 3 attempts failed: got %v, want the last error", err)
			}
			if f.calls != 3 {
				t.Errorf("calls: got %d, want 3", f.calls)
			}

			// Answers are final.
			for _, final := range []error{fs.ErrNotExist, fs.ErrExist, errors.New("host key mismatch")} {
				f = &flaky{errs: []error{final}}
				s, _ = newRetry(f, 5)
				if err := call(s); !errors.Is(err, final) || f.calls != 1 {
					t.Errorf("%v: got %v after %d calls, want it at once", final, err, f.calls)
				}
			}
		})
	}
}

// TestRetryPut checks that Put is retried only when its input can be read
// again.
func TestRetryPut(t *testing.T) {
	ctx := context.Background()
	data := []byte("0123456789")

	// Nothing consumed: retried.
	f := &flaky{errs: []error{errDown}}
	s, _ := newRetry(f, 3)
	if err := s.Put(ctx, "a", io.MultiReader(bytes.NewReader(data))); err != nil || !bytes.Equal(f.put, data) {
		t.Errorf("Put failing before reading: got %v, stored %q; want nil, %q", err, f.put, data)
	}

	// Consumed, not seekable: not retried.
	f = &flaky{errs: []error{errDown}, read: 4}
	s, _ = newRetry(f, 3)
	if err := s.Put(ctx, "a", io.MultiReader(bytes.NewReader(data))); !errors.Is(err, ErrUnavailable) || f.calls != 1 {
		t.Errorf("Put failing after reading a stream: got %v after %d calls, want the error at once", err, f.calls)
	}

	// Consumed, seekable: rewound to where it started and retried.
	f = &flaky{errs: []error{errDown, errDown}, read: 4}
	s, _ = newRetry(f, 3)
	r := bytes.NewReader(append([]byte("skip"), data...))
	r.Seek(4, io.SeekStart)
	if err := s.Put(ctx, "a", r); err != nil || !bytes.Equal(f.put, data) {
		t.Errorf("Put from a seekable reader: got %v, stored %q; want nil, %q", err, f.put, data)
	}
}

func TestRetryCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &flaky{errs: []error{errDown, errDown}}
	s := Retry(f, RetryPolicy{Attempts: 5, After: func(time.Duration) <-chan time.Time { cancel(); return nil }})
	_, err := s.Stat(ctx, "a")
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) || f.calls != 1 {
		t.Errorf("Stat cancelled while waiting to retry: got %v after %d calls, want both errors after 1", err, f.calls)
	}
}

func TestRetryKeepsWatcher(t *testing.T) {
	if _, ok := Retry(&flaky{}, RetryPolicy{}).(Watcher); ok {
		t.Errorf("Retry of a Storage without Watch is a Watcher")
	}
	if _, ok := Retry(&watching{}, RetryPolicy{}).(Watcher); !ok {
		t.Errorf("Retry of a Watcher is not one")
	}
}

type watching struct{ flaky }

func (w *watching) Watch(context.Context, string) (<-chan struct{}, error) { return nil, nil }
