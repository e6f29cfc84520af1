package waiter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/trigger"
	"github.com/walship/walship/wal"
)

// Defaults of a Waiter's settings.
const (
	DefaultPoll       = time.Second
	DefaultMaxBackoff = 30 * time.Second
)

// incompleteLogEvery is how often a wait for an incomplete raw copy says
// so at info level.
const incompleteLogEvery = 30 * time.Second

// presentEvery is how often a wait with no trigger set checks, while the
// segment is not archived yet, that the archive is there at all (present).
// Only an answer that ends the wait (a smart trigger's "not found", or a
// history probe's) must be checked each time; while nothing is triggered,
// "not found" only means looking again, and the check is there to warn
// about an unmounted archive, which every 30 s does as well. On S3 it is a
// request of the 4 of each poll.
const presentEvery = 30 * time.Second

// Trigger tells a Waiter whether an operator asked to end recovery.
type Trigger interface {
	// Mode returns the current request: trigger.None, Smart or Fast.
	Mode() trigger.Mode
	// Consume is called after a fast failover was answered, so that a file
	// asked for again is still served (pg_standby's behaviour).
	Consume() error
	// Changed receives when the request may have changed.
	Changed() <-chan struct{}
}

// Waiter waits for archived WAL files and restores them.
type Waiter struct {
	Storage archive.Storage
	Trigger Trigger // nil: no trigger, wait until the file arrives or MaxWait
	Expect  Expect
	Logger  *slog.Logger

	// Poll is how often the archive is checked when the backend cannot
	// report new files itself (SFTP, NFS), and a safety net when it can.
	Poll time.Duration
	// NoWatch polls even where the backend could watch: for a file system
	// whose change notifications cannot be trusted.
	NoWatch bool
	// MaxWait ends the wait for one segment as a fast failover would; zero
	// waits forever (pg_standby's -w).
	MaxWait time.Duration
	// MaxBackoff caps the delay between retries of a failing archive.
	MaxBackoff time.Duration

	// Alive, when set, is checked before every look into the archive; an
	// error ends the wait with it. It tells that the server that called
	// the command is gone (its postmaster was killed), so that a waiting
	// restore_command does not outlive it.
	Alive func() error

	// Now and After are the clock; tests replace them.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
}

// Wait restores the file name to dest, waiting until it is archived. It
// returns nil once dest holds the verified file. It returns an error matching
// ErrNotFound when the file is not a segment and is not archived (PostgreSQL
// probes history files and must get an answer at once), when a smart trigger
// is set and the segment is not archived, or when a fast trigger or MaxWait
// ends the wait. It returns ErrBadWAL for a file that must stop recovery,
// and ctx's error when ctx ends first. Errors reading the archive are logged
// and retried with backoff, never reported as "not found".
func (w *Waiter) Wait(ctx context.Context, name, dest string) error {
	n, err := wal.ParseName(name)
	if err != nil {
		return err
	}
	log := w.logger().With("file", name)
	start := w.now()

	// Watch before the first look so no arrival falls between the two.
	var arrived <-chan struct{}
	if n.Kind == wal.Segment && !w.NoWatch {
		if wa, ok := w.Storage.(archive.Watcher); ok {
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			dir := archive.WALDir
			if _, err := w.Storage.Stat(ctx, archive.IdentityFile); archive.IsNotExist(err) {
				// No walship.json: perhaps a pg_standby archive, with its
				// files at the root. Watching wal/ would create it.
				dir = ""
			}
			if arrived, err = wa.Watch(wctx, dir); err != nil {
				log.Warn("cannot watch the archive, polling instead", "err", err, "poll", w.poll())
				arrived = nil
			}
		}
	}
	var changed <-chan struct{}
	if w.Trigger != nil {
		changed = w.Trigger.Changed()
	}

	backoff := time.Duration(0)
	failures := 0
	waitingLogged := false
	var lastIncomplete, presentAt time.Time
	for {
		if w.Alive != nil {
			if err := w.Alive(); err != nil {
				return err
			}
		}
		// Only segments wait, so only they answer to a trigger: a history
		// probe must neither consume a fast trigger nor be refused by one.
		mode := trigger.None
		if n.Kind == wal.Segment {
			mode = w.mode()
		}
		if n.Kind == wal.Segment && mode != trigger.Fast && w.MaxWait > 0 && w.now().Sub(start) >= w.MaxWait {
			log.Warn("max wait reached: ending recovery as a fast failover would", "max_wait", w.MaxWait)
			mode = trigger.Fast
		}
		if mode == trigger.Fast {
			if w.Trigger != nil {
				if err := w.Trigger.Consume(); err != nil {
					log.Warn("cannot reset the trigger file to smart", "err", err)
				}
			}
			log.Info("fast failover: ending recovery without waiting for more WAL")
			return fmt.Errorf("%s: %w (fast failover)", name, ErrNotFound)
		}

		err := restore(ctx, w.Storage, n, dest, w.Expect)
		if mode != trigger.None || n.Kind != wal.Segment || w.now().Sub(presentAt) >= presentEvery {
			if err = believeNotFound(ctx, w.Storage, err); errors.Is(err, ErrNotFound) || errors.Is(err, errNotReady) {
				presentAt = w.now()
			}
		}
		switch {
		case err == nil:
			if failures > 0 {
				log.Info("archive readable again", "failed_attempts", failures)
			}
			log.Debug("restored", "waited_ms", w.now().Sub(start).Milliseconds())
			return nil
		case errors.Is(err, ErrBadWAL), errors.Is(err, wal.ErrInvalidName), errors.Is(err, ErrDestination):
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errNotReady):
			// A raw copy in progress, or a truncated one: which, only
			// later WAL can tell. A smart failover must not end recovery
			// without it either.
			if err := incomplete(ctx, w.Storage, n, err); errors.Is(err, ErrBadWAL) {
				return err
			}
			if mode == trigger.Smart {
				return fmt.Errorf("%w: %w: a smart failover cannot apply every archived segment while this one is incomplete; "+
					"complete or remove it, or fail over fast", ErrBadWAL, err)
			}
			failures, backoff = 0, 0
			if now := w.now(); now.Sub(lastIncomplete) >= incompleteLogEvery {
				log.Info("waiting for the archived copy of the segment to be complete", "reason", err, "waited", now.Sub(start).Round(time.Second))
				lastIncomplete = now
			}
			if err := w.sleep(ctx, w.poll(), arrived, changed); err != nil {
				return err
			}
		case errors.Is(err, ErrNotFound):
			if failures > 0 {
				log.Info("archive readable again", "failed_attempts", failures)
			}
			failures, backoff = 0, 0
			if n.Kind != wal.Segment {
				return fmt.Errorf("%s: %w", name, ErrNotFound)
			}
			if mode == trigger.Smart {
				// Last, what walship tail shipped of this segment.
				if err := w.restoreTail(ctx, n, dest, log); !errors.Is(err, ErrNotFound) {
					return err
				}
				log.Info("smart failover: every archived segment was applied, ending recovery")
				return fmt.Errorf("%s: %w (smart failover)", name, ErrNotFound)
			}
			if !waitingLogged {
				log.Debug("waiting for segment", "reason", err)
				waitingLogged = true
			}
			if err := w.sleep(ctx, w.poll(), arrived, changed); err != nil {
				return err
			}
		default:
			// The archive could not be read: never "not found", which
			// would promote the standby. Retry, and say so.
			failures++
			backoff = min(max(2*backoff, 100*time.Millisecond), w.maxBackoff())
			if failures == 1 || failures%10 == 0 {
				log.Warn("cannot read the archive, retrying", "err", err, "attempt", failures, "retry_in", backoff)
			}
			if err := w.sleep(ctx, backoff, nil, changed); err != nil {
				return err
			}
		}
	}
}

// sleep waits for d, an arrival, a trigger change or the end of ctx.
func (w *Waiter) sleep(ctx context.Context, d time.Duration, arrived, changed <-chan struct{}) error {
	if w.MaxWait > 0 {
		d = min(d, w.MaxWait)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-w.after(d):
	case <-arrived:
	case <-changed:
	}
	return nil
}

func (w *Waiter) mode() trigger.Mode {
	if w.Trigger == nil {
		return trigger.None
	}
	return w.Trigger.Mode()
}

func (w *Waiter) poll() time.Duration {
	if w.Poll > 0 {
		return w.Poll
	}
	return DefaultPoll
}

func (w *Waiter) maxBackoff() time.Duration {
	if w.MaxBackoff > 0 {
		return w.MaxBackoff
	}
	return DefaultMaxBackoff
}

func (w *Waiter) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Waiter) after(d time.Duration) <-chan time.Time {
	if w.After != nil {
		return w.After(d)
	}
	return time.After(d)
}

func (w *Waiter) logger() *slog.Logger {
	if w.Logger != nil {
		return w.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// believeNotFound returns err, unless err says the file is not archived (or
// not complete yet) and the archive itself does not look like one: then it
// returns why, an error worth a retry. "Not found" ends recovery, so it is
// believed only from an archive that is there.
func believeNotFound(ctx context.Context, st archive.Storage, err error) error {
	if errors.Is(err, ErrNotFound) || errors.Is(err, errNotReady) {
		if perr := present(ctx, st); perr != nil {
			return perr
		}
	}
	return err
}

// present returns an error unless the archive looks like one: it has
// walship.json or WAL files. An unmounted NFS directory is empty, and every
// file would be "not found" in it, which would promote the standby.
func present(ctx context.Context, st archive.Storage) error {
	_, err := st.Stat(ctx, archive.IdentityFile)
	if err == nil || !archive.IsNotExist(err) {
		return err
	}
	for _, dir := range []string{archive.WALDir, ""} {
		fis, err := st.List(ctx, dir)
		if err != nil {
			return err
		}
		for _, fi := range fis {
			// A pg_standby archive: WAL files at its root.
			if _, err := wal.ParseName(archive.TrimCompression(fi.Name)); err == nil || dir == archive.WALDir {
				return nil
			}
		}
	}
	return fmt.Errorf("archive %s holds neither %s nor WAL files: is it mounted, and is --archive right?",
		st, archive.IdentityFile)
}
