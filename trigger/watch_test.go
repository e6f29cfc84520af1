package trigger

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// within is how soon a Watcher must announce a change.
const within = time.Second

// start starts w until the test ends.
func start(t *testing.T, w *Watcher) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := w.Start(ctx)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return ch
}

func wantFire(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed, want a wake-up", what)
		}
	case <-time.After(within):
		t.Fatalf("%s: no wake-up within %v", what, within)
	}
}

func wantQuiet(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Errorf("%s: got a wake-up, want none", what)
	case <-time.After(150 * time.Millisecond):
	}
}

// drain takes a wake-up that may be pending, as a caller reading the file
// after each one would.
func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	case <-time.After(100 * time.Millisecond):
	}
}

func TestWatcherFires(t *testing.T) {
	for _, tc := range []struct {
		name     string
		noNotify bool
	}{
		{name: "fsnotify"},
		{name: "polling", noNotify: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "walship.trigger")
			w := &Watcher{Path: p, PollInterval: 50 * time.Millisecond, Signals: make(chan os.Signal), noNotify: tc.noNotify}
			ch := start(t, w)

			wantQuiet(t, ch, "nothing changed")
			if err := os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			wantQuiet(t, ch, "another file in the directory")

			if err := Write(p, Smart); err != nil {
				t.Fatal(err)
			}
			wantFire(t, ch, "create")
			drain(ch)

			if err := Write(p, Fast); err != nil {
				t.Fatal(err)
			}
			wantFire(t, ch, "atomic rewrite")
			drain(ch)

			// An operator's echo fast > file writes in place.
			if err := os.WriteFile(p, []byte("smart\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			wantFire(t, ch, "rewrite in place")
			drain(ch)

			if w.SignalledFast() {
				t.Errorf("SignalledFast: got true, want false without a signal")
			}
		})
	}
}

// A trigger directory that does not exist yet cannot be watched; polling
// sees the trigger once it is made.
func TestWatcherMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	p := filepath.Join(dir, "walship.trigger")
	ch := start(t, &Watcher{Path: p, PollInterval: 50 * time.Millisecond, Signals: make(chan os.Signal)})
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, Fast); err != nil {
		t.Fatal(err)
	}
	wantFire(t, ch, "create in a new directory")
}

// When the watched directory goes away, the Watcher polls instead.
func TestWatcherDirectoryReplaced(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "walship.trigger")
	ch := start(t, &Watcher{Path: p, PollInterval: 50 * time.Millisecond, Signals: make(chan os.Signal)})
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	drain(ch)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, Smart); err != nil {
		t.Fatal(err)
	}
	wantFire(t, ch, "create in a recreated directory")
}

func TestWatcherCloses(t *testing.T) {
	for _, noNotify := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		w := &Watcher{Path: filepath.Join(t.TempDir(), "t"), noNotify: noNotify}
		ch, err := w.Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		deadline := time.After(within)
		for open := true; open; {
			select {
			case _, open = <-ch:
			case <-deadline:
				t.Fatalf("noNotify %v: channel still open %v after cancel", noNotify, within)
			}
		}
	}
}

func TestWatcherStartErrors(t *testing.T) {
	for _, w := range []*Watcher{{}, {Path: "t", PollInterval: -time.Second}} {
		if _, err := w.Start(context.Background()); err == nil {
			t.Errorf("Start(%+v): got nil, want an error", w)
		}
	}
}

func TestWatcherSignalSeam(t *testing.T) {
	sigs := make(chan os.Signal, 1)
	w := &Watcher{Path: filepath.Join(t.TempDir(), "t"), Signals: sigs}
	ch := start(t, w)
	if w.SignalledFast() {
		t.Fatalf("SignalledFast before a signal: got true, want false")
	}
	sigs <- syscall.SIGUSR1
	wantFire(t, ch, "SIGUSR1")
	if !w.SignalledFast() {
		t.Errorf("SignalledFast after SIGUSR1: got false, want true")
	}
	drain(ch)
	if !w.SignalledFast() {
		t.Errorf("SignalledFast later: got false, want true (sticky)")
	}
}

func TestWatcherRealSIGUSR1(t *testing.T) {
	w := &Watcher{Path: filepath.Join(t.TempDir(), "t")}
	ch := start(t, w)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	wantFire(t, ch, "SIGUSR1")
	if !w.SignalledFast() {
		t.Errorf("SignalledFast after a real SIGUSR1: got false, want true")
	}
}
