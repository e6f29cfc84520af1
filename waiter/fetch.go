package waiter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// DefaultRetryFor is how long Fetch retries an archive it cannot read.
const DefaultRetryFor = 30 * time.Second

// ErrUnavailable says the archive could not be read for as long as Fetch
// retried: neither "found" nor "not found" is known.
var ErrUnavailable = errors.New("archive unavailable")

// Fetcher restores archived WAL for a recovery that must not wait: point in
// time recovery after Restore, and standby.signal standbys. It is the
// non-waiting sibling of Waiter.
type Fetcher struct {
	Storage archive.Storage
	Expect  Expect
	Logger  *slog.Logger
	// RetryFor bounds the retries of an archive that cannot be read;
	// zero means DefaultRetryFor.
	RetryFor time.Duration
	// Spool, when set, is a Spool whose prefetched files Fetch serves first.
	Spool *Spool

	// Now and Sleep are the clock; tests replace them.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// Fetch writes the verified archived file name to dest. It returns an error
// matching ErrNotFound at once when the archive, which is there,
// does not hold the file; ErrBadWAL for a file that must not be
// applied; and ErrUnavailable when the archive stays unreadable (or looks
// unmounted) for RetryFor, so that a caller never mistakes an unreachable
// archive for the end of the WAL.
func (f *Fetcher) Fetch(ctx context.Context, name, dest string) error {
	if _, err := wal.ParseName(name); err != nil {
		return err
	}
	log := f.logger().With("file", name)
	if f.Spool != nil {
		ok, err := f.Spool.Take(name, dest, f.Expect)
		if err != nil {
			log.Warn("cannot use the prefetched copy; fetching from the archive", "err", err)
		}
		if ok {
			log.Debug("restored from the prefetch spool")
			return nil
		}
	}
	retryFor := f.RetryFor
	if retryFor <= 0 {
		retryFor = DefaultRetryFor
	}
	start := f.now()
	backoff := time.Duration(0)
	for attempt := 1; ; attempt++ {
		err := believeNotFound(ctx, f.Storage, Restore(ctx, f.Storage, name, dest, f.Expect))
		switch {
		case err == nil:
			if attempt > 1 {
				log.Info("archive readable again", "attempts", attempt)
			}
			return nil
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrBadWAL), errors.Is(err, ErrDestination),
			errors.Is(err, wal.ErrInvalidName), ctx.Err() != nil:
			return err
		}
		if f.now().Sub(start) >= retryFor {
			return fmt.Errorf("%w: %s: gave up after %v: %w", ErrUnavailable, name, retryFor, err)
		}
		backoff = min(max(2*backoff, 200*time.Millisecond), 5*time.Second)
		log.Warn("cannot read the archive, retrying", "err", err, "attempt", attempt, "retry_in", backoff)
		if err := f.sleep(ctx, backoff); err != nil {
			return err
		}
	}
}

func (f *Fetcher) logger() *slog.Logger {
	if f.Logger != nil {
		return f.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (f *Fetcher) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f *Fetcher) sleep(ctx context.Context, d time.Duration) error {
	if f.Sleep != nil {
		return f.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
