package waiter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/shipper"
	"github.com/walship/walship/trigger"
	"github.com/walship/walship/wal"
)

// pagedSegment is segment with the short header of every page, as
// PostgreSQL writes them.
func pagedSegment(t *testing.T, sysid uint64, tli wal.TimeLine, segno wal.SegNo) []byte {
	t.Helper()
	b := segment(t, sysid, tli, segno)
	for off := 8192; off < len(b); off += 8192 {
		binary.LittleEndian.PutUint16(b[off:], 0xD110)
		binary.LittleEndian.PutUint16(b[off+2:], wal.InfoFirstIsContRecord)
		binary.LittleEndian.PutUint32(b[off+4:], uint32(tli))
		binary.LittleEndian.PutUint64(b[off+8:], uint64(segno.Start(segSize))+uint64(off))
	}
	return b
}

// putInc stores bytes [start, end) of seg as an increment of segment name.
func (e *env) putInc(name string, seg []byte, start, end int, c archive.Compression) {
	e.t.Helper()
	var r io.Reader = bytes.NewReader(seg[start:end])
	if c == archive.Zstd {
		zr := archive.Compress(r)
		defer zr.Close()
		r = zr
	}
	p := fmt.Sprintf("%s/%08X-%08X%s", archive.TailDir(name), start, end, c.Suffix())
	if err := e.st.Put(context.Background(), p, r); err != nil {
		e.t.Fatal(err)
	}
}

// smartWaiter is a Waiter whose trigger says smart.
func (e *env) smartWaiter() *Waiter {
	w := e.waiter()
	tr := newFakeTrigger()
	tr.set(trigger.Smart)
	w.Trigger, w.MaxBackoff = tr, 20*time.Millisecond
	return w
}

// wantTail checks that dest holds seg's first n bytes, then zeros up to the
// segment size.
func (e *env) wantTail(seg []byte, n int) {
	e.t.Helper()
	got := e.restored()
	if len(got) != segSize {
		e.t.Fatalf("restored %d bytes, want the segment size %d", len(got), segSize)
	}
	if !bytes.Equal(got[:n], seg[:n]) {
		e.t.Fatalf("restored prefix differs from the segment's first %d bytes", n)
	}
	if i := bytes.IndexFunc(got[n:], func(r rune) bool { return r != 0 }); i >= 0 {
		e.t.Fatalf("restored byte %X after the %X-byte prefix is not zero", n+i, n)
	}
}

func TestWaitSmartRestoresTail(t *testing.T) {
	for _, c := range []archive.Compression{archive.Zstd, archive.None} {
		t.Run(c.String(), func(t *testing.T) {
			e := newArchive(t)
			seg := pagedSegment(t, sysID, 1, 20)
			e.putInc(name(20), seg, 0, 30000, c)
			e.putInc(name(20), seg, 30000, 70001, c)
			w := e.smartWaiter()
			if err := w.Wait(context.Background(), name(20), e.dest); err != nil {
				t.Fatalf("Wait: %v, want the tail restored", err)
			}
			e.wantTail(seg, 70001)
			if err := w.Wait(context.Background(), name(21), e.dest); !errors.Is(err, ErrNotFound) {
				t.Fatalf("the segment after the tail: %v, want ErrNotFound", err)
			}
		})
	}
}

// Without a trigger, a tail is never served: the whole segment may come.
func TestWaitIgnoresTailWithoutTrigger(t *testing.T) {
	e := newArchive(t)
	seg := pagedSegment(t, sysID, 1, 20)
	e.putInc(name(20), seg, 0, 30000, archive.Zstd)
	ch := waitAsync(e.waiter(), name(20), e.dest)
	expectPending(t, ch, 150*time.Millisecond)
	e.put(name(20), seg, archive.Zstd)
	if err := expectResult(t, ch); err != nil {
		t.Fatal(err)
	}
	e.wantTail(seg, segSize)
}

func TestAssembleTail(t *testing.T) {
	seg := pagedSegment(t, sysID, 1, 20)
	for _, tc := range []struct {
		name string
		incs [][2]int
		want int // prefix length, or -1 for ErrNotFound
	}{
		{"gap ends the prefix", [][2]int{{0, 10000}, {20000, 30000}}, 10000},
		{"no increment at 0", [][2]int{{100, 30000}}, -1},
		{"overlaps", [][2]int{{0, 10000}, {0, 20000}, {5000, 40000}, {39000, 41000}}, 41000},
		{"shorter than the page header", [][2]int{{0, 30}}, -1},
		{"the whole segment", [][2]int{{0, 500000}, {500000, segSize}}, segSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newArchive(t)
			for _, r := range tc.incs {
				e.putInc(name(20), seg, r[0], r[1], archive.Zstd)
			}
			err := e.smartWaiter().Wait(context.Background(), name(20), e.dest)
			if tc.want < 0 {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("Wait: %v, want ErrNotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
			e.wantTail(seg, tc.want)
		})
	}
	t.Run("empty", func(t *testing.T) {
		e := newArchive(t)
		if err := e.smartWaiter().Wait(context.Background(), name(20), e.dest); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Wait: %v, want ErrNotFound", err)
		}
	})
}

// A damaged increment ends the prefix: everything before it is still WAL
// the primary had flushed.
func TestAssembleTailDamagedIncrement(t *testing.T) {
	seg := pagedSegment(t, sysID, 1, 20)
	for _, damage := range []string{"corrupt", "short"} {
		t.Run(damage, func(t *testing.T) {
			e := newArchive(t)
			e.putInc(name(20), seg, 0, 10000, archive.Zstd)
			var bad bytes.Buffer
			zr := archive.Compress(bytes.NewReader(seg[10000:20000]))
			io.Copy(&bad, zr)
			zr.Close()
			b := bad.Bytes()
			if damage == "corrupt" {
				b[len(b)/2] ^= 0xFF
			} else {
				zr := archive.Compress(bytes.NewReader(seg[10000:19000]))
				bad.Reset()
				io.Copy(&bad, zr)
				zr.Close()
				b = bad.Bytes()
			}
			if err := e.st.Put(context.Background(), archive.TailDir(name(20))+"/00002710-00004E20.zst", bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
			e.putInc(name(20), seg, 20000, 30000, archive.Zstd)
			if err := e.smartWaiter().Wait(context.Background(), name(20), e.dest); err != nil {
				t.Fatalf("Wait: %v", err)
			}
			e.wantTail(seg, 10000)
		})
	}
}

// Pages that are not the segment's own (stale bytes of a recycled file)
// end the prefix at the first of them.
func TestAssembleTailStalePage(t *testing.T) {
	e := newArchive(t)
	seg := pagedSegment(t, sysID, 1, 20)
	old := pagedSegment(t, sysID, 1, 4)
	mixed := append(append([]byte(nil), seg[:3*8192]...), old[3*8192:]...)
	e.putInc(name(20), mixed, 0, 5*8192+100, archive.Zstd)
	if err := e.smartWaiter().Wait(context.Background(), name(20), e.dest); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	e.wantTail(seg, 3*8192)
}

func TestAssembleTailForeign(t *testing.T) {
	for _, tc := range []struct {
		name string
		seg  []byte
	}{
		{"other cluster", pagedSegment(t, sysID+1, 1, 20)},
		{"other segment", pagedSegment(t, sysID, 1, 21)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newArchive(t)
			e.putInc(name(20), tc.seg, 0, 30000, archive.Zstd)
			if err := e.smartWaiter().Wait(context.Background(), name(20), e.dest); !errors.Is(err, ErrBadWAL) {
				t.Fatalf("Wait: %v, want ErrBadWAL", err)
			}
		})
	}
}

// After a segment restored from a tail that did not reach its end, the next
// one is "not found" even when increments of it exist: WAL after a gap must
// not be applied.
func TestTailAfterPartialTailIsNotFound(t *testing.T) {
	e := newArchive(t)
	s20, s21 := pagedSegment(t, sysID, 1, 20), pagedSegment(t, sysID, 1, 21)
	e.putInc(name(20), s20, 0, 30000, archive.Zstd)
	e.putInc(name(21), s21, 0, 30000, archive.Zstd)
	w := e.smartWaiter()
	if err := w.Wait(context.Background(), name(20), e.dest); err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(context.Background(), name(21), e.dest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Wait after a partial tail: %v, want ErrNotFound", err)
	}
	// Once the previous segment is complete, its successor's tail counts.
	e.putInc(name(20), s20, 30000, segSize, archive.Zstd)
	if err := w.Wait(context.Background(), name(21), e.dest); err != nil {
		t.Fatalf("Wait after a complete tail: %v", err)
	}
	e.wantTail(s21, 30000)
}

// listFlaky fails List of tail directories a few times.
type listFlaky struct {
	archive.Storage
	fails atomic.Int32
}

func (l *listFlaky) List(ctx context.Context, dir string) ([]archive.FileInfo, error) {
	if strings.HasSuffix(dir, ".tail") && l.fails.Add(-1) >= 0 {
		return nil, errDown
	}
	return l.Storage.List(ctx, dir)
}

func TestTailUnreadableIsRetried(t *testing.T) {
	e := newArchive(t)
	seg := pagedSegment(t, sysID, 1, 20)
	e.putInc(name(20), seg, 0, 30000, archive.Zstd)
	fl := &listFlaky{Storage: e.st}
	fl.fails.Store(3)
	w := e.smartWaiter()
	w.Storage = fl
	if err := w.Wait(context.Background(), name(20), e.dest); err != nil {
		t.Fatalf("Wait: %v, want the tail restored after retries", err)
	}
	e.wantTail(seg, 30000)
	if got := fl.fails.Load(); got >= 0 {
		t.Errorf("List failed %d times less than planned", got+1)
	}
}

// memServer is a primary for shipper.Tail whose segment 20 is seg, flushed
// up to flush.
type memServer struct {
	seg   []byte
	flush atomic.Int64
}

func (m *memServer) Flush(context.Context) (shipper.Position, error) {
	return shipper.Position{LSN: wal.SegNo(20).Start(segSize) + wal.LSN(m.flush.Load()), TLI: 1, SegmentSize: segSize}, nil
}

func (m *memServer) OpenSegment(string) (shipper.SegmentFile, error) { return m, nil }
func (m *memServer) Close() error                                    { return nil }
func (m *memServer) ReadAt(p []byte, off int64) (int, error) {
	return copy(p, m.seg[off:]), nil
}

// What shipper.Tail writes is what restoreTail reads.
func TestTailRoundTrip(t *testing.T) {
	for _, c := range []archive.Compression{archive.Zstd, archive.None} {
		t.Run(c.String(), func(t *testing.T) {
			e := newArchive(t)
			src := &memServer{seg: pagedSegment(t, sysID, 1, 20)}
			tl := &shipper.Tail{Storage: e.st, Source: src, Compression: c}
			for _, off := range []int64{100, 8191, 8192, 50000, 123457} {
				src.flush.Store(off)
				if err := tl.Step(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.smartWaiter().Wait(context.Background(), name(20), e.dest); err != nil {
				t.Fatal(err)
			}
			e.wantTail(src.seg, 123457)
		})
	}
}
