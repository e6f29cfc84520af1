package waiter

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// fakeClock makes Fetcher's sleeps instant, and calls hook after each.
func fakeClock(f *Fetcher, hook func(slept time.Duration)) {
	now := time.Unix(0, 0)
	var total time.Duration
	f.Now = func() time.Time { return now }
	f.Sleep = func(ctx context.Context, d time.Duration) error {
		now = now.Add(d)
		total += d
		if hook != nil {
			hook(total)
		}
		return ctx.Err()
	}
}

// putSegments archives segments first to last of timeline tli, zstd
// compressed, as segment makes them for sysID.
func putSegments(t *testing.T, st archive.Storage, tli wal.TimeLine, first, last wal.SegNo) {
	t.Helper()
	for s := first; s <= last; s++ {
		n := wal.SegmentName(tli, s, segSize)
		if err := archive.PutWAL(context.Background(), st, n, bytes.NewReader(segment(t, sysID, tli, s)), archive.Zstd); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFetch(t *testing.T) {
	ctx := context.Background()
	st := newArchive(t).st
	putSegments(t, st, 1, 3, 3)
	if err := st.Put(ctx, archive.WALPath("000000010000000000000004", ".zst"), strings.NewReader("damaged")); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	f := &Fetcher{Storage: st, Expect: Expect{SystemID: sysID, SegmentSize: segSize}}
	fakeClock(f, nil)

	if err := f.Fetch(ctx, "000000010000000000000003", dest); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dest); !bytes.Equal(b, segment(t, sysID, 1, 3)) {
		t.Errorf("restored segment differs from the archived one")
	}
	if err := f.Fetch(ctx, "000000010000000000000005", dest); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing segment: got %v, want ErrNotFound", err)
	}
	if err := f.Fetch(ctx, "00000002.history", dest); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing history file: got %v, want ErrNotFound", err)
	}
	if err := f.Fetch(ctx, "000000010000000000000004", dest); !errors.Is(err, ErrBadWAL) {
		t.Errorf("damaged segment: got %v, want ErrBadWAL", err)
	}
}

// An archive that cannot be read is retried, never "not found"; it gives
// up after RetryFor with ErrUnavailable.
func TestFetchUnavailable(t *testing.T) {
	ctx := context.Background()
	fl := &flaky{Storage: newArchive(t).st}
	putSegments(t, fl.Storage, 1, 3, 3)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	f := &Fetcher{Storage: fl, RetryFor: 30 * time.Second}

	fl.down.Store(true)
	fakeClock(f, nil)
	err := f.Fetch(ctx, "000000010000000000000005", dest)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
		t.Errorf("archive down: got %v, want ErrUnavailable", err)
	}
	if n := fl.calls.Load(); n < 3 {
		t.Errorf("archive down: %d attempts, want retries", n)
	}

	// It comes back after 10 seconds.
	fakeClock(f, func(slept time.Duration) { fl.down.Store(slept < 10*time.Second) })
	fl.down.Store(true)
	if err := f.Fetch(ctx, "000000010000000000000003", dest); err != nil {
		t.Errorf("archive back: %v", err)
	}

	// An empty directory is an unmounted archive, not an empty one.
	f = &Fetcher{Storage: newEnv(t).st, RetryFor: time.Second}
	fakeClock(f, nil)
	if err := f.Fetch(ctx, "000000010000000000000003", dest); !errors.Is(err, ErrUnavailable) {
		t.Errorf("empty archive directory: got %v, want ErrUnavailable", err)
	}
}

func TestSpool(t *testing.T) {
	ctx := context.Background()
	st := newArchive(t).st
	putSegments(t, st, 1, 3, 6)
	dir := t.TempDir()
	sp := &Spool{Dir: filepath.Join(dir, "spool")}
	exp := Expect{SystemID: sysID, SegmentSize: segSize}

	n, err := sp.Fill(ctx, st, exp, "000000010000000000000003", 5, segSize)
	if err != nil || n != 3 {
		t.Fatalf("Fill after 3 with 4..6 archived: %d, %v; want 3", n, err)
	}
	if n, err := sp.Fill(ctx, st, exp, "000000010000000000000003", 5, segSize); err != nil || n != 0 {
		t.Errorf("second Fill: %d, %v; want nothing new", n, err)
	}

	// Fetch serves from the spool first: with the archive down, it still
	// has segment 4.
	fl := &flaky{Storage: st}
	fl.down.Store(true)
	f := &Fetcher{Storage: fl, Spool: sp, RetryFor: time.Second}
	fakeClock(f, nil)
	dest := filepath.Join(dir, "RECOVERYXLOG")
	if err := f.Fetch(ctx, "000000010000000000000004", dest); err != nil {
		t.Fatalf("fetch from the spool: %v", err)
	}
	if b, _ := os.ReadFile(dest); !bytes.Equal(b, segment(t, sysID, 1, 4)) {
		t.Errorf("the spool served other bytes than segment 4")
	}
	if err := f.Fetch(ctx, "000000010000000000000004", dest); !errors.Is(err, ErrUnavailable) {
		t.Errorf("a spooled segment is served once; then: %v", err)
	}

	// Prune drops what recovery has passed, and junk.
	os.WriteFile(filepath.Join(sp.Dir, "junk"), nil, 0o600)
	os.WriteFile(filepath.Join(sp.Dir, "000000020000000000000002"), nil, 0o600)
	if err := sp.Prune("000000010000000000000006", 5, segSize); err != nil {
		t.Fatal(err)
	}
	var left []string
	entries, _ := os.ReadDir(sp.Dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if len(left) != 2 || left[0] != ".lock" || left[1] != "000000010000000000000006" {
		t.Errorf("after Prune: %v, want .lock and segment 6", left)
	}
}
