package trigger

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultPollInterval is how often a Watcher looks at the trigger file when
// it cannot be told of changes.
const DefaultPollInterval = time.Second

// Watcher tells a waiting restore command when a trigger may have appeared,
// so that it need not poll. It watches the trigger file's directory with
// fsnotify, and polls instead where fsnotify cannot see every change: when it
// cannot watch, and on network file systems (NFS, SMB, FUSE, …), where a file
// written on another host raises no event. It also wakes on SIGUSR1,
// pg_standby's signal for a fast failover.
//
// A Watcher only says "look again"; the caller reads the file with Read.
type Watcher struct {
	// Path is the trigger file.
	Path string
	// PollInterval is how often the file is looked at when polling;
	// zero means DefaultPollInterval.
	PollInterval time.Duration
	// Logger receives the choice between events and polling, and SIGUSR1.
	Logger *slog.Logger
	// Signals, when set, replaces the SIGUSR1 subscription: every value
	// received counts as a SIGUSR1. Tests set it.
	Signals <-chan os.Signal

	noNotify bool // tests: poll where fsnotify would work
	fast     atomic.Bool
}

// Start starts watching until ctx is done and returns a channel that
// receives when the trigger file may have changed, or a SIGUSR1 arrived.
// Wake-ups coalesce: a slow reader gets one, not a backlog. The channel is
// closed once ctx is done and the watch is torn down.
//
// Call Start once, and Read after it: a trigger set before Start is not
// announced. SIGUSR1 is caught from the moment Start returns.
func (w *Watcher) Start(ctx context.Context) (<-chan struct{}, error) {
	if w.Path == "" {
		return nil, errors.New("watch trigger: no trigger file given")
	}
	if w.PollInterval < 0 {
		return nil, errors.New("watch trigger: negative poll interval")
	}
	l := &loop{
		w:    w,
		path: filepath.Clean(w.Path),
		log:  w.Logger,
		out:  make(chan struct{}, 1),
		sigs: w.Signals,
	}
	l.dir = filepath.Dir(l.path)
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.log = l.log.With("path", l.path)
	if l.sigs == nil {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGUSR1)
		l.sigs = ch
		l.stopSignals = func() { signal.Stop(ch) }
	}
	l.watch()
	go l.run(ctx)
	return l.out, nil
}

// SignalledFast reports whether a SIGUSR1 arrived since Start: the caller
// treats it as a fast trigger, whatever the file says.
func (w *Watcher) SignalledFast() bool { return w.fast.Load() }

// loop is one running watch.
type loop struct {
	w           *Watcher
	path, dir   string
	log         *slog.Logger
	out         chan struct{}
	sigs        <-chan os.Signal
	stopSignals func()

	notify *fsnotify.Watcher // nil when polling
	ticker *time.Ticker      // nil when notified
	last   stamp             // what polling saw last
}

// watch sets up fsnotify on the directory, or polling where that would miss
// changes.
func (l *loop) watch() {
	if l.w.noNotify {
		l.startTicker()
		return
	}
	if name := remoteFS(l.dir); name != "" {
		// Debug: walship wait starts once per segment.
		l.log.Debug("trigger directory is on a network file system: polling", "fs", name, "interval", l.interval())
		l.startTicker()
		return
	}
	nw, err := fsnotify.NewWatcher()
	if err != nil {
		l.poll(err.Error())
		return
	}
	if err := nw.Add(l.dir); err != nil {
		nw.Close()
		l.poll(err.Error())
		return
	}
	l.notify = nw
}

func (l *loop) poll(reason string) {
	l.log.Warn("cannot watch the trigger directory: polling", "reason", reason, "interval", l.interval())
	l.startTicker()
}

func (l *loop) startTicker() {
	if l.ticker != nil {
		return
	}
	if l.notify != nil {
		l.notify.Close()
		l.notify = nil
	}
	l.last = statFile(l.path)
	l.ticker = time.NewTicker(l.interval())
}

func (l *loop) interval() time.Duration {
	if l.w.PollInterval > 0 {
		return l.w.PollInterval
	}
	return DefaultPollInterval
}

func (l *loop) run(ctx context.Context) {
	defer func() {
		if l.notify != nil {
			l.notify.Close()
		}
		if l.ticker != nil {
			l.ticker.Stop()
		}
		if l.stopSignals != nil {
			l.stopSignals()
		}
		close(l.out)
	}()
	for {
		var events <-chan fsnotify.Event
		var errs <-chan error
		var tick <-chan time.Time
		if l.notify != nil {
			events, errs = l.notify.Events, l.notify.Errors
		}
		if l.ticker != nil {
			tick = l.ticker.C
		}
		select {
		case <-ctx.Done():
			return
		case s, ok := <-l.sigs:
			if !ok {
				l.sigs = nil
				continue
			}
			l.log.Info("signal received: fast failover requested", "signal", s)
			l.w.fast.Store(true)
			l.fire()
		case ev, ok := <-events:
			if !ok {
				l.poll("fsnotify stopped")
				l.fire()
				continue
			}
			l.event(ev)
		case err, ok := <-errs:
			if !ok {
				continue // Events closes too, and handles it.
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				l.log.Debug("fsnotify queue overflow")
			} else {
				l.poll(err.Error())
			}
			l.fire() // events may have been lost
		case <-tick:
			if s := statFile(l.path); s != l.last {
				l.last = s
				l.fire()
			}
		}
	}
}

func (l *loop) event(ev fsnotify.Event) {
	name := filepath.Clean(ev.Name)
	switch {
	case name == l.path:
		// Remove is not a trigger; the atomic Write shows up as Create.
		if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write) || ev.Has(fsnotify.Rename) || ev.Has(fsnotify.Chmod) {
			l.fire()
		}
	case name == l.dir && (ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)):
		// The watch went with the directory; a new one may yet appear.
		l.poll("trigger directory removed or renamed")
		l.fire()
	}
}

// fire announces a possible change without blocking; one pending wake-up
// covers any number of changes.
func (l *loop) fire() {
	select {
	case l.out <- struct{}{}:
	default:
	}
}

// stamp is what polling compares: a rename over the file changes its inode,
// an edit in place its size or modification time.
type stamp struct {
	exists   bool
	err      string
	dev, ino uint64
	size     int64
	mtime    int64
	mode     fs.FileMode
}

func statFile(path string) stamp {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return stamp{}
	}
	if err != nil {
		return stamp{err: err.Error()}
	}
	s := stamp{exists: true, size: fi.Size(), mtime: fi.ModTime().UnixNano(), mode: fi.Mode()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), uint64(st.Ino)
	}
	return s
}
