package shipper

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/local"
	"github.com/walship/walship/wal"
)

// stale is what the fake pg_wal holds past the flush position: bytes a
// tail must never ship.
const stale = 0xEE

// walSegment is fakeSegment with the short page header of every page, as
// PostgreSQL writes them, so that waiter's page checks accept it.
func walSegment(t *testing.T, tli uint32, segno uint64) []byte {
	t.Helper()
	b := fakeSegment(t, testSysID, tli, segno, uint64(tli)<<32|segno)
	for off := 8192; off < len(b); off += 8192 {
		binary.LittleEndian.PutUint16(b[off:], 0xD110)
		binary.LittleEndian.PutUint16(b[off+2:], 0)
		binary.LittleEndian.PutUint32(b[off+4:], tli)
		binary.LittleEndian.PutUint64(b[off+8:], segno*testSegSize+uint64(off))
		binary.LittleEndian.PutUint32(b[off+16:], 0)
	}
	return b
}

// fakeServer is a primary as a Tail sees it: a flush position and pg_wal.
// Files hold their final content up to the flush position and stale bytes
// after it.
type fakeServer struct {
	t  *testing.T
	mu sync.Mutex

	pos      Position
	flushErr error
	recycled map[string]bool // file now holds another segment
	removed  map[string]bool // file gone from pg_wal
	content  map[string][]byte
}

func newFakeServer(t *testing.T, tli wal.TimeLine, lsn wal.LSN) *fakeServer {
	return &fakeServer{t: t, pos: Position{LSN: lsn, TLI: tli, SegmentSize: testSegSize},
		recycled: map[string]bool{}, removed: map[string]bool{}, content: map[string][]byte{}}
}

func (f *fakeServer) set(tli wal.TimeLine, lsn wal.LSN) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pos.TLI, f.pos.LSN = tli, lsn
}

// final returns the content segment name will have once written whole.
func (f *fakeServer) final(name string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.finalLocked(name)
}

func (f *fakeServer) finalLocked(name string) []byte {
	if b, ok := f.content[name]; ok {
		return b
	}
	n, err := wal.ParseName(name)
	if err != nil {
		f.t.Fatal(err)
	}
	segno, _ := n.SegNo(testSegSize)
	b := walSegment(f.t, uint32(n.TLI), uint64(segno))
	f.content[name] = b
	return b
}

func (f *fakeServer) Flush(context.Context) (Position, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.flushErr != nil {
		return Position{}, f.flushErr
	}
	return f.pos, nil
}

func (f *fakeServer) OpenSegment(name string) (SegmentFile, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed[name] {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &fakeFile{s: f, name: name}, nil
}

type fakeFile struct {
	s    *fakeServer
	name string
}

func (ff *fakeFile) ReadAt(p []byte, off int64) (int, error) {
	f := ff.s
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.finalLocked(ff.name)
	if f.recycled[ff.name] {
		n, _ := wal.ParseName(ff.name)
		segno, _ := n.SegNo(testSegSize)
		b = walSegment(f.t, uint32(n.TLI), uint64(segno)+7) // renamed from an old segment, rewritten
	}
	if off+int64(len(p)) > int64(len(b)) {
		return 0, io.EOF
	}
	copy(p, b[off:])
	// Past the flush position of the current timeline the file holds
	// stale bytes.
	n, _ := wal.ParseName(ff.name)
	segno, _ := n.SegNo(testSegSize)
	if n.TLI == f.pos.TLI {
		flushed := int64(f.pos.LSN) - int64(segno.Start(testSegSize))
		for i := range p {
			if off+int64(i) >= flushed && off+int64(i) >= wal.LongHeaderSize {
				p[i] = stale
			}
		}
	}
	return len(p), nil
}

func (ff *fakeFile) Close() error { return nil }

// flakyStorage fails Puts while down is set.
type flakyStorage struct {
	archive.Storage
	mu   sync.Mutex
	down bool
	puts int
}

func (s *flakyStorage) setDown(d bool) { s.mu.Lock(); s.down = d; s.mu.Unlock() }

func (s *flakyStorage) Put(ctx context.Context, name string, r io.Reader) error {
	s.mu.Lock()
	down := s.down
	s.puts++
	s.mu.Unlock()
	if down {
		return errors.New("archive unreachable")
	}
	return s.Storage.Put(ctx, name, r)
}

func newTestArchive(t *testing.T) (string, *local.Storage) {
	dir := t.TempDir()
	st, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, st
}

func newTail(st archive.Storage, src Source, c archive.Compression) *Tail {
	return &Tail{Storage: st, Source: src, Compression: c, Interval: time.Millisecond}
}

func lsn(segno uint64, off int64) wal.LSN { return wal.LSN(segno*testSegSize + uint64(off)) }

func step(t *testing.T, tl *Tail) {
	t.Helper()
	if err := tl.Step(context.Background()); err != nil {
		t.Fatalf("Step: %v", err)
	}
}

// ranges lists the increments of a segment as "start-end".
func ranges(t *testing.T, st archive.Storage, segment string) []string {
	t.Helper()
	rs, err := archive.ListIncrements(context.Background(), st, segment)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%X-%X", r.Start, r.End))
	}
	return out
}

// assembled reads the increments of a segment back in order, checking that
// they are contiguous from 0 and do not overlap.
func assembled(t *testing.T, st archive.Storage, segment string) []byte {
	t.Helper()
	rs, err := archive.ListIncrements(context.Background(), st, segment)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, r := range rs {
		if r.Start != int64(len(out)) {
			t.Fatalf("%s: increment %s starts at %X, want %X (ranges %v)", segment, r.Name, r.Start, len(out),
				ranges(t, st, segment))
		}
		rc, err := st.Open(context.Background(), TailDir(segment)+"/"+r.Name)
		if err != nil {
			t.Fatal(err)
		}
		var rd io.Reader = rc
		if strings.HasSuffix(r.Name, ".zst") {
			d, err := archive.Decompress(rc)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			rd = d
		}
		b, err := io.ReadAll(rd)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		if int64(len(b)) != r.End-r.Start {
			t.Fatalf("%s holds %d bytes", r.Name, len(b))
		}
		out = append(out, b...)
	}
	return out
}

// checkTail checks that segment's increments hold exactly its first n bytes.
func checkTail(t *testing.T, st archive.Storage, src *fakeServer, segment string, n int64) {
	t.Helper()
	got := assembled(t, st, segment)
	want := src.final(segment)[:n]
	if !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Fatalf("tail of %s: %d bytes, want %d; first difference at %X (stale bytes shipped?)", segment, len(got), n, i)
	}
}

func TestTailShipsUpToFlushOnly(t *testing.T) {
	for _, c := range []archive.Compression{archive.Zstd, archive.None} {
		t.Run(c.String(), func(t *testing.T) {
			_, st := newTestArchive(t)
			src := newFakeServer(t, 1, lsn(2, 100000))
			tl := newTail(st, src, c)
			seg := segName(1, 2)
			step(t, tl)
			checkTail(t, st, src, seg, 100000)
			step(t, tl) // nothing new: no increment
			src.set(1, lsn(2, 300001))
			step(t, tl)
			checkTail(t, st, src, seg, 300001)
			if got, want := strings.Join(ranges(t, st, seg), " "), "0-186A0 186A0-493E1"; got != want {
				t.Errorf("increments %s, want %s", got, want)
			}
			s := tl.Stats()
			if s.Increments != 2 || s.WALBytes != 300001 {
				t.Errorf("stats %+v, want 2 increments of 300001 bytes", s)
			}
			if c == archive.None && s.StoredBytes != s.WALBytes {
				t.Errorf("stored %d bytes raw, shipped %d", s.StoredBytes, s.WALBytes)
			}
			id, err := archive.ReadIdentity(context.Background(), st)
			if err != nil || id.SystemID != testSysID || id.SegmentSize != testSegSize {
				t.Errorf("identity recorded by the tail: %+v, %v", id, err)
			}
		})
	}
}

// At an exact segment boundary the flush position belongs to the new
// segment at offset 0: the old one is complete, the new one has nothing.
func TestTailSegmentBoundary(t *testing.T) {
	_, st := newTestArchive(t)
	src := newFakeServer(t, 1, lsn(2, 5000))
	tl := newTail(st, src, archive.Zstd)
	step(t, tl)
	src.set(1, lsn(3, 0))
	step(t, tl)
	checkTail(t, st, src, segName(1, 2), testSegSize)
	if got := ranges(t, st, segName(1, 3)); len(got) != 0 {
		t.Errorf("segment 3 has increments %v at offset 0", got)
	}
	src.set(1, lsn(3, 8192))
	step(t, tl)
	checkTail(t, st, src, segName(1, 3), 8192)
}

// Behind by several segments: the rest of each is shipped, unless it is
// archived whole already, in which case its increments go.
func TestTailCatchesUpAcrossSegments(t *testing.T) {
	_, st := newTestArchive(t)
	src := newFakeServer(t, 1, lsn(2, 5000))
	tl := newTail(st, src, archive.Zstd)
	step(t, tl)
	step(t, tl)
	// Segment 3 got a first increment from another run, and is archived.
	if err := st.Put(context.Background(), TailDir(segName(1, 3))+"/00000000-00001000", bytes.NewReader(src.final(segName(1, 3))[:0x1000])); err != nil {
		t.Fatal(err)
	}
	if err := archive.PutWAL(context.Background(), st, segName(1, 3), bytes.NewReader(src.final(segName(1, 3))), archive.Zstd); err != nil {
		t.Fatal(err)
	}
	src.set(1, lsn(5, 777))
	step(t, tl)
	checkTail(t, st, src, segName(1, 2), testSegSize)
	if got := ranges(t, st, segName(1, 3)); len(got) != 0 {
		t.Errorf("archived segment 3 kept increments %v", got)
	}
	checkTail(t, st, src, segName(1, 4), testSegSize)
	checkTail(t, st, src, segName(1, 5), 777)
}

// A promotion: the old timeline's segment is left where it ended, the new
// timeline's starts from offset 0.
func TestTailTimelineSwitch(t *testing.T) {
	_, st := newTestArchive(t)
	src := newFakeServer(t, 1, lsn(4, 20000))
	tl := newTail(st, src, archive.Zstd)
	step(t, tl)
	src.set(2, lsn(4, 30000))
	step(t, tl)
	checkTail(t, st, src, segName(1, 4), 20000)
	checkTail(t, st, src, segName(2, 4), 30000)
	src.set(2, lsn(5, 10))
	step(t, tl)
	checkTail(t, st, src, segName(2, 4), testSegSize)
	checkTail(t, st, src, segName(2, 5), 10)
	checkTail(t, st, src, segName(1, 4), 20000)
}

// A restarted tail continues where the archive's increments end, also in
// the previous segment when the server left it while the tail was down.
func TestTailRestartContinues(t *testing.T) {
	_, st := newTestArchive(t)
	src := newFakeServer(t, 1, lsn(2, 40000))
	step(t, newTail(st, src, archive.Zstd))

	src.set(1, lsn(2, 90000))
	step(t, newTail(st, src, archive.Zstd))
	if got, want := strings.Join(ranges(t, st, segName(1, 2)), " "), "0-9C40 9C40-15F90"; got != want {
		t.Errorf("increments %s, want %s", got, want)
	}

	src.set(1, lsn(3, 100))
	step(t, newTail(st, src, archive.None)) // another compression is fine too
	checkTail(t, st, src, segName(1, 2), testSegSize)
	checkTail(t, st, src, segName(1, 3), 100)
}

// While the archive is down nothing is skipped: the next Step ships every
// byte since the last increment stored.
func TestTailArchiveOutage(t *testing.T) {
	_, st := newTestArchive(t)
	fl := &flakyStorage{Storage: st}
	src := newFakeServer(t, 1, lsn(2, 1000))
	tl := newTail(fl, src, archive.Zstd)
	step(t, tl)
	fl.setDown(true)
	for _, off := range []int64{5000, 9000, testSegSize} {
		src.set(1, lsn(2, off))
		if err := tl.Step(context.Background()); err == nil {
			t.Fatal("Step with the archive down: got nil, want an error")
		}
	}
	src.set(1, lsn(3, 4242))
	if err := tl.Step(context.Background()); err == nil {
		t.Fatal("Step with the archive down: got nil, want an error")
	}
	fl.setDown(false)
	step(t, tl)
	checkTail(t, st, src, segName(1, 2), testSegSize)
	checkTail(t, st, src, segName(1, 3), 4242)
}

// Run retries a server that is down and an archive that is down, and stops
// cleanly when ctx ends.
func TestTailRunRetriesAndStops(t *testing.T) {
	_, st := newTestArchive(t)
	fl := &flakyStorage{Storage: st, down: true}
	src := newFakeServer(t, 1, lsn(2, 1000))
	src.flushErr = errors.New("connection refused")
	var logs safeBuffer
	tl := &Tail{Storage: fl, Source: src, Compression: archive.Zstd, Interval: 5 * time.Millisecond,
		MaxBackoff: 10 * time.Millisecond, LogEvery: 20 * time.Millisecond, Logger: newTestLogger(&logs)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	waitLog := func(s string) {
		for !strings.Contains(logs.String(), s) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", s, logs.String())
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitLog("connection refused")
	src.mu.Lock()
	src.flushErr = nil
	src.mu.Unlock()
	waitLog("archive unreachable")
	fl.setDown(false)
	for len(ranges(t, st, segName(1, 2))) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	src.set(1, lsn(2, 70000))
	for len(ranges(t, st, segName(1, 2))) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop when ctx ended")
	}
	checkTail(t, st, src, segName(1, 2), 70000)
	out := logs.String()
	for _, want := range []string{"connection refused", "archive unreachable", "tail shipping again", "tail lag", "lag_bytes="} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// A segment file that PostgreSQL recycled, or removed, is skipped when the
// segment is archived whole, and is an error while it is not.
func TestTailRecycledSegment(t *testing.T) {
	for _, how := range []string{"recycled", "removed"} {
		t.Run(how, func(t *testing.T) {
			_, st := newTestArchive(t)
			src := newFakeServer(t, 1, lsn(2, 1000))
			tl := newTail(st, src, archive.Zstd)
			step(t, tl)
			src.mu.Lock()
			if how == "recycled" {
				src.recycled[segName(1, 2)] = true
			} else {
				src.removed[segName(1, 2)] = true
			}
			src.mu.Unlock()
			tl.closeSegment()
			src.set(1, lsn(3, 500))
			err := tl.Step(context.Background())
			if err == nil || !strings.Contains(err.Error(), "not archived") {
				t.Fatalf("Step: got %v, want an error saying the segment is not archived", err)
			}
			if got := ranges(t, st, segName(1, 2)); len(got) != 1 {
				t.Fatalf("increments %v: bytes of another segment were shipped", got)
			}
			if err := archive.PutWAL(context.Background(), st, segName(1, 2), bytes.NewReader(src.final(segName(1, 2))), archive.Zstd); err != nil {
				t.Fatal(err)
			}
			step(t, tl)
			if got := ranges(t, st, segName(1, 2)); len(got) != 0 {
				t.Errorf("archived segment kept increments %v", got)
			}
			checkTail(t, st, src, segName(1, 3), 500)
		})
	}
}

func TestTailRefusesForeignArchive(t *testing.T) {
	_, st := newTestArchive(t)
	id := archive.Identity{Format: archive.FormatVersion, SystemID: 42, PGVersion: 15, SegmentSize: testSegSize, BlockSize: 8192}
	if _, err := archive.InitIdentity(context.Background(), st, id); err != nil {
		t.Fatal(err)
	}
	src := newFakeServer(t, 1, lsn(2, 1000))
	tl := newTail(st, src, archive.Zstd)
	if err := tl.Run(context.Background()); !errors.Is(err, archive.ErrIdentityMismatch) {
		t.Fatalf("Run: got %v, want ErrIdentityMismatch", err)
	}
	if got := ranges(t, st, segName(1, 2)); len(got) != 0 {
		t.Errorf("shipped %v into another cluster's archive", got)
	}
}

// The flush position never goes back on a running primary; when it does
// (a restored cluster), nothing is shipped until it passes what was.
func TestTailFlushBehind(t *testing.T) {
	_, st := newTestArchive(t)
	src := newFakeServer(t, 1, lsn(2, 9000))
	tl := newTail(st, src, archive.Zstd)
	step(t, tl)
	src.set(1, lsn(2, 4000))
	step(t, tl)
	src.set(1, lsn(2, 12000))
	step(t, tl)
	checkTail(t, st, src, segName(1, 2), 12000)
}

// push removes a segment's increments, and their directory, once the
// segment is archived whole or as .partial.
func TestPushRemovesTail(t *testing.T) {
	for _, kind := range []string{"segment", "partial"} {
		t.Run(kind, func(t *testing.T) {
			dir, st := newTestArchive(t)
			src := newFakeServer(t, 1, lsn(2, 5000))
			step(t, newTail(st, src, archive.Zstd))
			name := segName(1, 2)
			if kind == "partial" {
				name += ".partial"
			}
			p := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(p, src.final(segName(1, 2)), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := (&Pusher{Storage: st}).Push(context.Background(), p, name); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(TailDir(segName(1, 2))))); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("tail directory after push: %v, want it gone", err)
			}
		})
	}
}

func TestParseTailName(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ok         bool
		start, end int64
	}{
		{"00000000-00001000", true, 0, 0x1000},
		{"00000000-00001000.zst", true, 0, 0x1000},
		{"00FFE000-01000000.zst", true, 0xFFE000, 0x1000000},
		{"00000000-40000000", true, 0, 1 << 30},
		{"00000000-40000001", false, 0, 0},
		{"00001000-00001000", false, 0, 0},
		{"00002000-00001000", false, 0, 0},
		{"0000000a-00001000", false, 0, 0},
		{"00000000_00001000", false, 0, 0},
		{"0000000-000001000", false, 0, 0},
		{"00000000-00001000.gz", false, 0, 0},
		{"+0000000-00001000", false, 0, 0},
		{"", false, 0, 0},
	} {
		r, ok := archive.ParseIncrement(tc.name)
		if ok != tc.ok || (ok && (r.Start != tc.start || r.End != tc.end)) {
			t.Errorf("archive.ParseIncrement(%q) = %+v, %v; want %X-%X, %v", tc.name, r, ok, tc.start, tc.end, tc.ok)
		}
		if ok && archive.IncrementName(r.Start, r.End, archive.None) != strings.TrimSuffix(tc.name, ".zst") {
			t.Errorf("tailName does not round-trip %q", tc.name)
		}
	}
	for _, tc := range []struct {
		rs   []archive.Increment
		want int64
	}{
		{nil, 0},
		{[]archive.Increment{{Start: 10, End: 20}}, 0},
		{[]archive.Increment{{Start: 0, End: 10}, {Start: 10, End: 20}, {Start: 30, End: 40}}, 20},
		{[]archive.Increment{{Start: 0, End: 10}, {Start: 5, End: 30}, {Start: 8, End: 12}, {Start: 30, End: 31}}, 31},
	} {
		if got := archive.ContiguousEnd(tc.rs); got != tc.want {
			t.Errorf("archive.ContiguousEnd(%v) = %d, want %d", tc.rs, got, tc.want)
		}
	}
}

// safeBuffer is a bytes.Buffer that Run's goroutine and the test may use at
// once.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
