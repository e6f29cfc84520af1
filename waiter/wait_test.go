package waiter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/local"
	"github.com/walship/walship/trigger"
	"github.com/walship/walship/wal"
)

const (
	segSize = 1 << 20
	sysID   = 7310000000000000042
)

func segment(t *testing.T, sysid uint64, tli wal.TimeLine, segno wal.SegNo) []byte {
	t.Helper()
	h := wal.LongHeader{Magic: 0xD110, Info: wal.InfoLongHeader, TLI: tli, PageAddr: segno.Start(segSize),
		SystemID: sysid, SegmentSize: segSize, BlockSize: 8192}
	hb, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, segSize)
	r := rand.New(rand.NewPCG(uint64(segno), sysid))
	for i := range b {
		b[i] = byte(r.IntN(8))
	}
	copy(b, hb)
	return b
}

func name(segno wal.SegNo) string { return wal.SegmentName(1, segno, segSize) }

type env struct {
	t    *testing.T
	root string
	st   archive.Storage
	dest string
	real bool // the cluster of wal/testdata
}

func newEnv(t *testing.T) *env {
	root := t.TempDir()
	st, err := local.New(root)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, root: root, st: st, dest: filepath.Join(t.TempDir(), "RECOVERYXLOG")}
}

// newArchive is newEnv with the identity a first push records.
func newArchive(t *testing.T) *env {
	e := newEnv(t)
	id := archive.Identity{Format: archive.FormatVersion, SystemID: sysID, PGVersion: 15, SegmentSize: segSize, BlockSize: 8192}
	if _, err := archive.InitIdentity(context.Background(), e.st, id); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) put(name string, b []byte, c archive.Compression) {
	e.t.Helper()
	if err := archive.PutWAL(context.Background(), e.st, name, bytes.NewReader(b), c); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) restored() []byte {
	e.t.Helper()
	b, err := os.ReadFile(e.dest)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *env) waiter() *Waiter {
	return &Waiter{Storage: e.st, Expect: Expect{SystemID: e.sysID(), SegmentSize: segSize}, Poll: 20 * time.Millisecond}
}

func (e *env) sysID() uint64 {
	if e.real {
		return realSysID
	}
	return sysID
}

// Real WAL of PostgreSQL 15 (wal/testdata): raw segments have their records
// verified, so tests of raw restores need WAL a server wrote.
const (
	realSysID = 7710793034807477968
	realName  = "000000010000000000000007"
)

func realSegment(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "wal", "testdata", realName))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newRealArchive is newArchive for the cluster of wal/testdata.
func newRealArchive(t *testing.T) *env {
	e := newEnv(t)
	e.real = true
	id := archive.Identity{Format: archive.FormatVersion, SystemID: realSysID, PGVersion: 15, SegmentSize: segSize, BlockSize: 8192}
	if _, err := archive.InitIdentity(context.Background(), e.st, id); err != nil {
		t.Fatal(err)
	}
	return e
}

// waitAsync runs Wait in the background and returns its result channel.
func waitAsync(w *Waiter, name, dest string) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- w.Wait(context.Background(), name, dest) }()
	return ch
}

func expectPending(t *testing.T, ch <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("Wait returned %v while it should still wait", err)
	case <-time.After(d):
	}
}

func expectResult(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return within 10 s")
		return nil
	}
}

func TestWaitRestoresArchivedSegment(t *testing.T) {
	for _, c := range []archive.Compression{archive.Zstd, archive.None} {
		t.Run(c.String(), func(t *testing.T) {
			e := newRealArchive(t)
			seg := realSegment(t)
			e.put(realName, seg, c)
			if err := e.waiter().Wait(context.Background(), realName, e.dest); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(e.restored(), seg) {
				t.Error("restored segment differs from the archived one")
			}
			leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(e.dest), ".walship*"))
			if len(leftovers) > 0 {
				t.Errorf("temporary files left beside %%p: %v", leftovers)
			}
		})
	}
}

func TestWaitBlocksUntilSegmentArrives(t *testing.T) {
	e := newArchive(t)
	w := e.waiter()
	w.Poll = time.Hour // only the watcher can wake it
	ch := waitAsync(w, name(4), e.dest)
	expectPending(t, ch, 200*time.Millisecond)
	seg := segment(t, sysID, 1, 4)
	e.put(name(4), seg, archive.Zstd)
	if err := expectResult(t, ch); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.restored(), seg) {
		t.Error("restored segment differs")
	}
}

func TestWaitNonSegmentAnswersAtOnce(t *testing.T) {
	e := newArchive(t)
	w := e.waiter()
	w.Poll = time.Hour
	start := time.Now()
	err := w.Wait(context.Background(), "00000002.history", e.dest)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing history: %v, want ErrNotFound", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("missing history took %v, want an answer at once", d)
	}
	hist := []byte("1\t0/3000060\tno recovery target specified\n")
	e.put("00000002.history", hist, archive.Zstd)
	if err := w.Wait(context.Background(), "00000002.history", e.dest); err != nil {
		t.Fatal(err)
	}
	if got := e.restored(); !bytes.Equal(got, hist) {
		t.Errorf("restored history %q, want %q", got, hist)
	}
}

// A raw segment copied with plain cp is not served until it is whole.
func TestWaitRawSegmentOnlyWhenComplete(t *testing.T) {
	e := newRealArchive(t)
	seg := realSegment(t)
	dir := filepath.Join(e.root, archive.WALDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, realName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(seg[:segSize/3]); err != nil {
		t.Fatal(err)
	}
	ch := waitAsync(e.waiter(), realName, e.dest)
	expectPending(t, ch, 300*time.Millisecond)
	if _, err := os.Stat(e.dest); !os.IsNotExist(err) {
		t.Fatalf("%%p exists while the archived copy is incomplete (stat: %v)", err)
	}
	if _, err := f.Write(seg[segSize/3:]); err != nil {
		t.Fatal(err)
	}
	if err := expectResult(t, ch); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.restored(), seg) {
		t.Error("restored segment differs")
	}
}

func TestWaitBadSegmentsStopRecovery(t *testing.T) {
	tests := []struct {
		name string
		file func(t *testing.T, e *env)
	}{
		{"corrupt zstd", func(t *testing.T, e *env) {
			e.put(name(6), segment(t, sysID, 1, 6), archive.Zstd)
			p := filepath.Join(e.root, archive.WALPath(name(6), ".zst"))
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0xFF
			os.WriteFile(p, b, 0o644)
		}},
		{"foreign cluster", func(t *testing.T, e *env) { e.put(name(6), segment(t, sysID+1, 1, 6), archive.Zstd) }},
		{"wrong segment", func(t *testing.T, e *env) { e.put(name(6), segment(t, sysID, 1, 7), archive.Zstd) }},
		{"oversized raw", func(t *testing.T, e *env) { e.put(name(6), append(segment(t, sysID, 1, 6), 0), archive.None) }},
		{"short compressed", func(t *testing.T, e *env) { e.put(name(6), segment(t, sysID, 1, 6)[:segSize-8192], archive.Zstd) }},
		{"junk raw", func(t *testing.T, e *env) { e.put(name(6), bytes.Repeat([]byte("junk"), segSize/4), archive.None) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newArchive(t)
			tt.file(t, e)
			err := e.waiter().Wait(context.Background(), name(6), e.dest)
			if !errors.Is(err, ErrBadWAL) {
				t.Fatalf("got %v, want ErrBadWAL", err)
			}
			if _, err := os.Stat(e.dest); !os.IsNotExist(err) {
				t.Errorf("%%p was written for a bad segment (stat: %v)", err)
			}
		})
	}
}

type fakeTrigger struct {
	mode     atomic.Int32
	consumed atomic.Int32
	changed  chan struct{}
}

func newFakeTrigger() *fakeTrigger { return &fakeTrigger{changed: make(chan struct{}, 1)} }

func (f *fakeTrigger) Mode() trigger.Mode { return trigger.Mode(f.mode.Load()) }
func (f *fakeTrigger) Consume() error {
	f.consumed.Add(1)
	f.mode.Store(int32(trigger.Smart))
	return nil
}
func (f *fakeTrigger) Changed() <-chan struct{} { return f.changed }
func (f *fakeTrigger) set(m trigger.Mode) {
	f.mode.Store(int32(m))
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

func TestWaitSmartTriggerServesArchivedThenEnds(t *testing.T) {
	e := newArchive(t)
	tr := newFakeTrigger()
	w := e.waiter()
	w.Trigger = tr
	w.Poll = time.Hour
	ch := waitAsync(w, name(8), e.dest)
	expectPending(t, ch, 100*time.Millisecond)
	e.put(name(8), segment(t, sysID, 1, 8), archive.Zstd)
	e.put(name(9), segment(t, sysID, 1, 9), archive.Zstd)
	if err := expectResult(t, ch); err != nil {
		t.Fatal(err)
	}
	tr.set(trigger.Smart)
	if err := w.Wait(context.Background(), name(9), e.dest); err != nil {
		t.Fatalf("archived segment under a smart trigger: %v, want it restored", err)
	}
	if err := w.Wait(context.Background(), name(10), e.dest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing segment under a smart trigger: %v, want ErrNotFound", err)
	}
}

func TestWaitSmartTriggerWhileWaiting(t *testing.T) {
	e := newArchive(t)
	tr := newFakeTrigger()
	w := e.waiter()
	w.Trigger, w.Poll = tr, time.Hour
	ch := waitAsync(w, name(8), e.dest)
	expectPending(t, ch, 100*time.Millisecond)
	tr.set(trigger.Smart)
	if err := expectResult(t, ch); !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
}

func TestWaitFastTriggerEndsAtOnceAndIsConsumed(t *testing.T) {
	e := newArchive(t)
	e.put(name(11), segment(t, sysID, 1, 11), archive.Zstd)
	tr := newFakeTrigger()
	tr.set(trigger.Fast)
	w := e.waiter()
	w.Trigger = tr
	if err := w.Wait(context.Background(), name(11), e.dest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fast trigger: %v, want ErrNotFound even for an archived segment", err)
	}
	if tr.consumed.Load() != 1 {
		t.Errorf("trigger consumed %d times, want 1", tr.consumed.Load())
	}
	// Asked again, the archived segment is served (the trigger is smart now).
	if err := w.Wait(context.Background(), name(11), e.dest); err != nil {
		t.Errorf("segment asked for again after a fast failover: %v, want it restored", err)
	}
}

func TestWaitMaxWait(t *testing.T) {
	e := newArchive(t)
	w := e.waiter()
	w.MaxWait = 150 * time.Millisecond
	start := time.Now()
	if err := w.Wait(context.Background(), name(12), e.dest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 3*time.Second {
		t.Errorf("max wait 150ms ended after %v", d)
	}
}

// flaky fails every call while down is set, as an unreachable archive does.
type flaky struct {
	archive.Storage
	down  atomic.Bool
	calls atomic.Int32
}

var errDown = errors.New("connection refused")

func (f *flaky) fail() error {
	f.calls.Add(1)
	if f.down.Load() {
		return errDown
	}
	return nil
}
func (f *flaky) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.Storage.Open(ctx, name)
}
func (f *flaky) Stat(ctx context.Context, name string) (archive.FileInfo, error) {
	if err := f.fail(); err != nil {
		return archive.FileInfo{}, err
	}
	return f.Storage.Stat(ctx, name)
}

func TestWaitUnreachableArchiveIsNeverNotFound(t *testing.T) {
	e := newArchive(t)
	fl := &flaky{Storage: e.st}
	fl.down.Store(true)
	tr := newFakeTrigger()
	tr.set(trigger.Smart) // even a smart trigger must not end recovery on an error
	w := e.waiter()
	w.Storage, w.Trigger, w.MaxBackoff = fl, tr, 50*time.Millisecond
	hist := make(chan error, 1)
	go func() { hist <- w.Wait(context.Background(), "00000005.history", e.dest+".h") }()
	ch := waitAsync(w, name(13), e.dest)
	expectPending(t, ch, 400*time.Millisecond)
	select {
	case err := <-hist:
		t.Fatalf("history probe returned %v while the archive was down", err)
	default:
	}
	if fl.calls.Load() < 3 {
		t.Errorf("archive tried %d times in 400ms, want retries", fl.calls.Load())
	}
	e.put(name(13), segment(t, sysID, 1, 13), archive.Zstd)
	fl.down.Store(false)
	if err := expectResult(t, ch); err != nil {
		t.Fatalf("after the archive came back: %v, want the segment restored", err)
	}
	if err := expectResult(t, hist); !errors.Is(err, ErrNotFound) {
		t.Fatalf("history after the archive came back: %v, want ErrNotFound", err)
	}
}

func TestWaitContextEnds(t *testing.T) {
	e := newArchive(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	var err error
	go func() { defer wg.Done(); err = e.waiter().Wait(ctx, name(14), e.dest) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	wg.Wait()
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrNotFound) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestCleanup(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) *env {
		e := newArchive(t)
		for _, n := range []string{name(1), name(2), name(3), name(4)} {
			e.put(n, segment(t, sysID, 1, mustSeg(t, n)), archive.Zstd)
		}
		e.put(wal.SegmentName(2, 2, segSize), segment(t, sysID, 2, 2), archive.Zstd)
		for _, n := range []string{"00000001.history", name(3) + ".partial", name(1) + ".00000028.backup"} {
			e.put(n, []byte("1\t0/3000060\tx\n"), archive.None)
		}
		return e
	}
	left := func(t *testing.T, e *env) []string {
		fis, err := e.st.List(ctx, archive.WALDir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, fi := range fis {
			if base, ok := strings.CutSuffix(fi.Name, archive.ChecksumSuffix); ok {
				// A checksum file stays only with its raw file.
				if !slices.ContainsFunc(fis, func(f archive.FileInfo) bool { return f.Name == base }) {
					t.Errorf("checksum file %s left without %s", fi.Name, base)
				}
				continue
			}
			names = append(names, fi.Name)
		}
		return names
	}
	all := []string{name(1) + ".00000028.backup", name(1) + ".zst", name(2) + ".zst", name(3) + ".partial", name(3) + ".zst", name(4) + ".zst",
		"00000001.history", wal.SegmentName(2, 2, segSize) + ".zst"}
	for _, tc := range []struct {
		name          string
		restart, keep string
		dryRun        bool
		removed       []string
	}{
		{name: "segments before %r on every timeline", restart: wal.SegmentName(2, 3, segSize),
			removed: []string{name(1) + ".zst", name(2) + ".zst", wal.SegmentName(2, 2, segSize) + ".zst"}},
		{name: "a .backup file as the cleanup point", restart: name(2) + ".00000028.backup",
			removed: []string{name(1) + ".zst"}},
		{name: "the oldest backup's WAL is kept", restart: wal.SegmentName(2, 4, segSize), keep: name(2),
			removed: []string{name(1) + ".zst"}},
		{name: "a backup older than %r changes nothing", restart: name(2), keep: name(1),
			removed: nil},
		{name: "dry run", restart: name(3), dryRun: true,
			removed: []string{name(1) + ".zst", name(2) + ".zst", wal.SegmentName(2, 2, segSize) + ".zst"}},
		{name: "all-zero %r", restart: "000000010000000000000000", removed: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			removed, err := Cleanup(ctx, e.st, tc.restart, CleanupOptions{KeepFrom: tc.keep, DryRun: tc.dryRun})
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(removed)
			if !slices.Equal(removed, tc.removed) {
				t.Errorf("removed %v, want %v", removed, tc.removed)
			}
			var want []string
			for _, n := range all {
				if tc.dryRun || !slices.Contains(tc.removed, n) {
					want = append(want, n)
				}
			}
			got := left(t, e)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("left %v, want %v", got, want)
			}
		})
	}
	for _, bad := range []string{"00000001.history", "../000000010000000000000003", "junk", ""} {
		if _, err := Cleanup(ctx, setup(t).st, bad, CleanupOptions{}); err == nil {
			t.Errorf("Cleanup(%q): no error", bad)
		}
	}
}

func mustSeg(t *testing.T, s string) wal.SegNo {
	n, err := wal.ParseName(s)
	if err != nil {
		t.Fatal(err)
	}
	seg, _ := n.SegNo(segSize)
	return seg
}

// An empty directory (an NFS share that is not mounted) is not an archive
// where files are missing: wait must not say "not found".
func TestWaitEmptyArchiveIsNotNotFound(t *testing.T) {
	e := newEnv(t)
	w := e.waiter()
	w.MaxBackoff = 20 * time.Millisecond
	hist := waitAsync(w, "00000002.history", e.dest)
	expectPending(t, hist, 300*time.Millisecond)
	// The share comes back: the history file is really missing.
	e.put(name(1), segment(t, sysID, 1, 1), archive.Zstd)
	if err := expectResult(t, hist); !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound once the archive is there", err)
	}
}

// PostgreSQL probes history files at startup; a fast trigger must survive
// them and end recovery at the first segment.
func TestWaitFastTriggerIgnoredForHistory(t *testing.T) {
	e := newArchive(t)
	hist := []byte("1\t0/3000060\tno recovery target specified\n")
	e.put("00000002.history", hist, archive.Zstd)
	tr := newFakeTrigger()
	tr.set(trigger.Fast)
	w := e.waiter()
	w.Trigger = tr
	if err := w.Wait(context.Background(), "00000002.history", e.dest); err != nil {
		t.Fatalf("archived history under a fast trigger: %v, want it restored", err)
	}
	if err := w.Wait(context.Background(), "00000003.history", e.dest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing history: %v, want ErrNotFound", err)
	}
	if tr.consumed.Load() != 0 || tr.Mode() != trigger.Fast {
		t.Fatalf("history probes consumed the fast trigger")
	}
}

// A local archive wakes Wait at once through its watch; with NoWatch, Wait
// sees an arrival only at its next poll.
func TestWaitNoWatchPolls(t *testing.T) {
	for _, noWatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoWatch %t", noWatch), func(t *testing.T) {
			e := newArchive(t)
			w := e.waiter()
			w.Poll = time.Hour
			w.NoWatch = noWatch
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			ch := make(chan error, 1)
			go func() { ch <- w.Wait(ctx, name(3), e.dest) }()
			time.Sleep(200 * time.Millisecond)
			e.put(name(3), segment(t, sysID, 1, 3), archive.Zstd)
			err := <-ch
			switch {
			case !noWatch && err != nil:
				t.Errorf("watched archive: Wait = %v, want the segment at once", err)
			case noWatch && !errors.Is(err, context.DeadlineExceeded):
				t.Errorf("NoWatch with an hour's poll: Wait = %v, want no wake before the poll", err)
			}
		})
	}
}

// statCounter counts the Stats of walship.json, the check that the archive
// is there (present).
type statCounter struct {
	archive.Storage
	identity atomic.Int32
}

func (s *statCounter) Stat(ctx context.Context, name string) (archive.FileInfo, error) {
	if name == archive.IdentityFile {
		s.identity.Add(1)
	}
	return s.Storage.Stat(ctx, name)
}

// While nothing is triggered, a waiting Wait checks that the archive is
// there once, not at every poll (on S3, one request in four), and checks
// again before a smart trigger's "not found" ends recovery: an archive
// that vanished meanwhile (an NFS share unmounted) never promotes.
func TestWaitChecksArchiveBeforeEnding(t *testing.T) {
	e := newArchive(t)
	sc := &statCounter{Storage: e.st}
	tr := newFakeTrigger()
	w := e.waiter()
	w.Storage, w.Trigger, w.NoWatch, w.MaxBackoff = sc, tr, true, 20*time.Millisecond
	ch := waitAsync(w, name(13), e.dest)
	expectPending(t, ch, 300*time.Millisecond) // 15 polls
	if got := sc.identity.Load(); got != 1 {
		t.Errorf("15 idle polls checked the archive %d times, want once", got)
	}
	// The archive vanishes (its files gone, as from an unmounted share),
	// then the operator asks for a smart failover.
	if err := os.RemoveAll(filepath.Join(e.root, archive.WALDir)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(e.root, archive.IdentityFile)); err != nil {
		t.Fatal(err)
	}
	tr.set(trigger.Smart)
	expectPending(t, ch, 300*time.Millisecond)
	if got := sc.identity.Load(); got < 3 {
		t.Errorf("under a smart trigger the archive was checked %d times in all, want it checked at every look", got)
	}
	// It comes back, without the segment: now the smart failover ends recovery.
	e.put(name(1), segment(t, sysID, 1, 1), archive.Zstd)
	if err := expectResult(t, ch); !errors.Is(err, ErrNotFound) {
		t.Fatalf("smart trigger, archive back: got %v, want ErrNotFound", err)
	}
}
