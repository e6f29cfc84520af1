package waiter

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/trigger"
)

// copyRaw puts b into the archive as plain cp would: raw, no checksum file.
func (e *env) copyRaw(name string, b []byte) string {
	e.t.Helper()
	dir := filepath.Join(e.root, archive.WALDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		e.t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute) // not a copy still being written
	os.Chtimes(p, old, old)
	return p
}

// A raw segment with bytes flipped in a record is refused, whether it has
// a checksum file (pushed with --compress none) or not (copied in).
func TestWaitRefusesDamagedRawSegment(t *testing.T) {
	for _, copied := range []bool{false, true} {
		e := newRealArchive(t)
		seg := realSegment(t)
		bad := bytes.Clone(seg)
		bad[len(bad)/2+123] ^= 0x10
		if copied {
			e.copyRaw(realName, bad)
		} else {
			e.put(realName, seg, archive.None)
			if err := os.WriteFile(filepath.Join(e.root, "wal", realName), bad, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		err := e.waiter().Wait(context.Background(), realName, e.dest)
		if !errors.Is(err, ErrBadWAL) {
			t.Errorf("copied=%v: damaged raw segment: %v, want ErrBadWAL", copied, err)
		}
		if _, err := os.Stat(e.dest); !os.IsNotExist(err) {
			t.Errorf("copied=%v: %%p written", copied)
		}
	}
}

// A short raw segment is a copy in progress only while nothing later is
// archived and no smart trigger asks to finish.
func TestWaitTruncatedRawSegment(t *testing.T) {
	seg := realSegment(t)
	t.Run("later WAL archived", func(t *testing.T) {
		e := newRealArchive(t)
		e.copyRaw(realName, seg[:len(seg)/3])
		e.copyRaw("000000010000000000000008", seg) // any later name
		err := e.waiter().Wait(context.Background(), realName, e.dest)
		if !errors.Is(err, ErrBadWAL) || !strings.Contains(err.Error(), "000000010000000000000008") {
			t.Errorf("truncated segment with later WAL: %v, want ErrBadWAL naming the later file", err)
		}
	})
	t.Run("smart trigger", func(t *testing.T) {
		e := newRealArchive(t)
		e.copyRaw(realName, nil) // empty: the copy has not begun, or was cut
		w := e.waiter()
		tr := newFakeTrigger()
		tr.set(trigger.Smart)
		w.Trigger = tr
		if err := w.Wait(context.Background(), realName, e.dest); !errors.Is(err, ErrBadWAL) {
			t.Errorf("empty raw segment under a smart trigger: %v, want ErrBadWAL", err)
		}
	})
	t.Run("fetch", func(t *testing.T) {
		e := newRealArchive(t)
		e.copyRaw(realName, seg[:4096])
		f := &Fetcher{Storage: e.st, Expect: Expect{SystemID: realSysID, SegmentSize: segSize}, RetryFor: 300 * time.Millisecond}
		if err := f.Fetch(context.Background(), realName, e.dest); !errors.Is(err, ErrUnavailable) {
			t.Errorf("truncated, newest: %v, want ErrUnavailable after retrying", err)
		}
		e.copyRaw("000000020000000000000007", seg[:0]) // same segment, later timeline
		if err := f.Fetch(context.Background(), realName, e.dest); !errors.Is(err, ErrBadWAL) {
			t.Errorf("truncated, later WAL archived: %v, want ErrBadWAL", err)
		}
	})
	t.Run("logs while it waits", func(t *testing.T) {
		e := newRealArchive(t)
		e.copyRaw(realName, seg[:len(seg)/2])
		var logs bytes.Buffer
		w := e.waiter()
		w.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := w.Wait(ctx, realName, e.dest); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("incomplete copy: %v, want to keep waiting", err)
		}
		if !strings.Contains(logs.String(), "level=INFO") || !strings.Contains(logs.String(), "complete") {
			t.Errorf("no info log while waiting for an incomplete copy:\n%s", logs.String())
		}
	})
}

// %p in a directory that does not exist fails at once.
func TestRestoreDestinationMissing(t *testing.T) {
	e := newRealArchive(t)
	e.put(realName, realSegment(t), archive.Zstd)
	dest := filepath.Join(t.TempDir(), "no-such-dir", "RECOVERYXLOG")
	done := make(chan error, 1)
	go func() { done <- e.waiter().Wait(context.Background(), realName, dest) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrDestination) || !strings.Contains(err.Error(), "no-such-dir") {
			t.Errorf("wait into a missing directory: %v, want ErrDestination naming it", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait into a missing directory retries")
	}
	f := &Fetcher{Storage: e.st, RetryFor: time.Minute}
	if err := f.Fetch(context.Background(), realName, dest); !errors.Is(err, ErrDestination) {
		t.Errorf("fetch into a missing directory: %v, want ErrDestination", err)
	}
}

// A history file naming its own or a later timeline as an ancestor is
// refused: the server would fail on it at promotion.
func TestRestoreRefusesInconsistentHistory(t *testing.T) {
	e := newRealArchive(t)
	e.put("00000003.history", []byte("1\t0/3000060\tx\n3\t0/4000060\tx\n"), archive.Zstd)
	if err := e.waiter().Wait(context.Background(), "00000003.history", e.dest); !errors.Is(err, ErrBadWAL) {
		t.Errorf("history naming its own timeline: %v, want ErrBadWAL", err)
	}
}

// A raw segment copied in moments ago whose records fail may still be being
// written where a tool preallocated it: wait gives it time (10 s) before
// taking it for damage.
func TestWaitGivesFreshRawCopyTime(t *testing.T) {
	e := newRealArchive(t)
	seg := realSegment(t)
	half := bytes.Clone(seg)
	clear(half[len(half)/2:]) // preallocated, written halfway
	p := e.copyRaw(realName, half)
	now := time.Now()
	os.Chtimes(p, now, now)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := e.waiter().Wait(ctx, realName, e.dest); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fresh, half-written raw copy: %v, want to keep waiting", err)
	}
	old := now.Add(-time.Minute)
	os.Chtimes(p, old, old)
	if err := e.waiter().Wait(context.Background(), realName, e.dest); !errors.Is(err, ErrBadWAL) {
		t.Errorf("the same copy, a minute old: %v, want ErrBadWAL", err)
	}
}
