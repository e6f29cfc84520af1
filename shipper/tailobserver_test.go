package shipper

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// recorder is a TailObserver that remembers what it was told.
type recorder struct {
	mu       sync.Mutex
	shipped  []string // "segment end walBytes"
	stored   int64
	lags     []TailLag
	errs     []error
	archived []string
}

func (r *recorder) Shipped(segment string, end wal.LSN, walBytes, storedBytes int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.shipped = append(r.shipped, fmt.Sprintf("%s %v %d", segment, end, walBytes))
	r.stored += storedBytes
}

func (r *recorder) Lag(l TailLag) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lags = append(r.lags, l)
}

func (r *recorder) ArchiveError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *recorder) SegmentArchived(segment string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.archived = append(r.archived, segment)
}

// lastLag returns the lag of the last poll, and how many polls there were.
func (r *recorder) lastLag(t *testing.T) (TailLag, int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lags) == 0 {
		t.Fatal("Lag was never called")
	}
	return r.lags[len(r.lags)-1], len(r.lags)
}

// fakeClock is a Tail's Now that moves only when told.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) advance(d time.Duration) { c.now = c.now.Add(d) }

func observedTail(st archive.Storage, src Source) (*Tail, *recorder, *fakeClock) {
	rec := &recorder{}
	clock := &fakeClock{now: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}
	tl := newTail(st, src, archive.Zstd)
	tl.Observer, tl.Now = rec, clock.Now
	return tl, rec, clock
}

func TestTailObserverShipped(t *testing.T) {
	_, st := newTestArchive(t)
	src := newFakeServer(t, 1, lsn(2, 100000))
	tl, rec, _ := observedTail(st, src)
	seg := segName(1, 2)
	step(t, tl)
	step(t, tl) // nothing new: no increment
	src.set(1, lsn(2, 300001))
	step(t, tl)
	want := []string{
		fmt.Sprintf("%s %v 100000", seg, lsn(2, 100000)),
		fmt.Sprintf("%s %v 200001", seg, lsn(2, 300001)),
	}
	if !slices.Equal(rec.shipped, want) {
		t.Errorf("Shipped calls %q, want %q", rec.shipped, want)
	}
	if s := tl.Stats(); rec.stored != s.StoredBytes || s.StoredBytes == 0 {
		t.Errorf("Shipped told of %d stored bytes, Stats says %d", rec.stored, s.StoredBytes)
	}
	l, polls := rec.lastLag(t)
	if want := (TailLag{Flush: lsn(2, 300001), Shipped: lsn(2, 300001)}); l != want || polls != 3 {
		t.Errorf("after %d polls Lag %+v, want %+v after 3", polls, l, want)
	}
	if len(rec.errs) != 0 || len(rec.archived) != 0 {
		t.Errorf("archive errors %v, archived segments %v: want none", rec.errs, rec.archived)
	}
}

// While the archive is down each failed Put is an archive error, and the
// lag grows in bytes and seconds; once it is back both drop to zero.
func TestTailObserverOutage(t *testing.T) {
	_, st := newTestArchive(t)
	fl := &flakyStorage{Storage: st}
	src := newFakeServer(t, 1, lsn(2, 1000))
	tl, rec, clock := observedTail(fl, src)
	step(t, tl)
	fl.setDown(true)
	src.set(1, lsn(2, 5000))
	clock.advance(3 * time.Second)
	for i := range 2 {
		if err := tl.Step(context.Background()); err == nil {
			t.Fatal("Step with the archive down: got nil, want an error")
		}
		if len(rec.errs) != i+1 || !strings.Contains(rec.errs[i].Error(), "archive unreachable") {
			t.Fatalf("after %d failed Steps archive errors %v, want %d", i+1, rec.errs, i+1)
		}
	}
	l, _ := rec.lastLag(t)
	if want := (TailLag{Flush: lsn(2, 5000), Shipped: lsn(2, 1000), Bytes: 4000, Seconds: 3}); l != want {
		t.Errorf("Lag with the archive down %+v, want %+v", l, want)
	}
	fl.setDown(false)
	step(t, tl)
	l, _ = rec.lastLag(t)
	if want := (TailLag{Flush: lsn(2, 5000), Shipped: lsn(2, 5000)}); l != want {
		t.Errorf("Lag once shipped %+v, want %+v", l, want)
	}
	if len(rec.errs) != 2 {
		t.Errorf("archive errors %v after the archive came back, want the 2 of the outage", rec.errs)
	}
}

// A server that is down is not an archive error, but the lag in seconds
// still grows; a standby waiting to be promoted has no lag.
func TestTailObserverServerDown(t *testing.T) {
	_, st := newTestArchive(t)
	src := newFakeServer(t, 1, lsn(2, 1000))
	tl, rec, clock := observedTail(st, src)
	step(t, tl)
	src.flushErr = fmt.Errorf("connection refused")
	clock.advance(2 * time.Second)
	if err := tl.Step(context.Background()); err == nil {
		t.Fatal("Step with the server down: got nil")
	}
	if l, _ := rec.lastLag(t); l.Seconds != 2 {
		t.Errorf("Lag with the server down %+v, want 2 seconds", l)
	}
	src.flushErr = fmt.Errorf("pg_is_in_recovery: %w", ErrInRecovery)
	clock.advance(5 * time.Second)
	if err := tl.Step(context.Background()); err == nil {
		t.Fatal("Step on a standby: got nil")
	}
	if l, _ := rec.lastLag(t); l.Seconds != 0 {
		t.Errorf("Lag on a standby %+v, want 0 seconds", l)
	}
	if len(rec.errs) != 0 {
		t.Errorf("archive errors %v from a server that is down", rec.errs)
	}
}

// A Step whose ctx ends fails, but that is no archive error.
func TestTailObserverCanceled(t *testing.T) {
	_, st := newTestArchive(t)
	src := newFakeServer(t, 1, lsn(2, 1000))
	tl, rec, _ := observedTail(st, src)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tl.Step(ctx); err == nil {
		t.Fatal("Step with ctx canceled: got nil")
	}
	if len(rec.errs) != 0 {
		t.Errorf("archive errors %v when ctx ended", rec.errs)
	}
}

// Each segment the Tail leaves is reported once all of it is in the
// archive, shipped by the Tail or archived whole; the segment of a timeline
// the server left is not.
func TestTailObserverSegmentArchived(t *testing.T) {
	_, st := newTestArchive(t)
	src := newFakeServer(t, 1, lsn(2, 5000))
	tl, rec, _ := observedTail(st, src)
	step(t, tl)
	if err := archive.PutWAL(context.Background(), st, segName(1, 3), bytes.NewReader(src.final(segName(1, 3))), archive.Zstd); err != nil {
		t.Fatal(err)
	}
	src.set(1, lsn(4, 100))
	step(t, tl)
	if want := []string{segName(1, 2), segName(1, 3)}; !slices.Equal(rec.archived, want) {
		t.Errorf("archived segments %v, want %v", rec.archived, want)
	}
	src.set(2, lsn(4, 200))
	step(t, tl)
	src.set(2, lsn(5, 0))
	step(t, tl)
	if want := []string{segName(1, 2), segName(1, 3), segName(2, 4)}; !slices.Equal(rec.archived, want) {
		t.Errorf("archived segments %v, want %v", rec.archived, want)
	}
	if len(rec.errs) != 0 {
		t.Errorf("archive errors %v", rec.errs)
	}
}
