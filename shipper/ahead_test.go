package shipper

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/internal/pgtest"
)

// pgWAL lays out a pg_wal directory with segments 1..n of timeline 1,
// each marked ready, and returns it.
func pgWAL(t *testing.T, n uint64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pg_wal")
	if err := os.MkdirAll(filepath.Join(dir, "archive_status"), 0o700); err != nil {
		t.Fatal(err)
	}
	for seg := uint64(1); seg <= n; seg++ {
		name := segName(1, seg)
		if err := os.WriteFile(filepath.Join(dir, name), fakeSegment(t, testSysID, 1, seg, seg), 0o600); err != nil {
			t.Fatal(err)
		}
		ready(t, dir, name)
	}
	return dir
}

func ready(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "archive_status", name+".ready"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// concurrentPuts records how many Puts run at once, at most.
type concurrentPuts struct {
	archive.Storage
	mu        sync.Mutex
	now, most int
}

func (c *concurrentPuts) Put(ctx context.Context, name string, r io.Reader) error {
	c.mu.Lock()
	c.now++
	c.most = max(c.most, c.now)
	c.mu.Unlock()
	time.Sleep(20 * time.Millisecond) // a slow archive: overlap shows
	defer func() { c.mu.Lock(); c.now--; c.mu.Unlock() }()
	return c.Storage.Put(ctx, name, r)
}

func TestReadySegments(t *testing.T) {
	dir := pgWAL(t, 5)
	ready(t, dir, "00000002.history")
	ready(t, dir, segName(1, 3)+".partial")
	ready(t, dir, "junk")
	got := ReadySegments(filepath.Join(dir, segName(1, 2)), segName(1, 2), 3)
	want := []string{segName(1, 1), segName(1, 3), segName(1, 4)}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v: whole segments only, oldest first, not the pushed one, at most 3", got, want)
	}
	if got := ReadySegments(filepath.Join(t.TempDir(), "x"), "x", 3); got != nil {
		t.Errorf("without archive_status: %v, want none", got)
	}
}

// A push ships the next ready segments with its own, concurrently; the
// later calls for them find them archived and succeed without storing
// anything.
func TestPushAheadShipsReadySegments(t *testing.T) {
	f := newFixture(t)
	dir := pgWAL(t, 6)
	cp := &concurrentPuts{Storage: f.st}
	p := &Pusher{Storage: cp, Compression: archive.Zstd, SystemID: testSysID}
	ctx := context.Background()
	first := segName(1, 1)
	if err := p.PushAhead(ctx, filepath.Join(dir, first), first, LookAhead{Max: 3, Jobs: 2}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for seg := uint64(1); seg <= 4; seg++ {
		want = append(want, segName(1, seg)+".zst")
	}
	if got := f.walFiles(); !slices.Equal(got, want) {
		t.Fatalf("wal/ holds %v, want %v", got, want)
	}
	if cp.most != 2 {
		t.Errorf("at most %d puts at once, want --jobs 2", cp.most)
	}
	// PostgreSQL's call for a segment shipped ahead: identical, at once.
	os.Remove(filepath.Join(dir, "archive_status", first+".ready"))
	second := segName(1, 2)
	counted := &walReads{Storage: f.st, n: map[string]int64{}}
	p2 := &Pusher{Storage: counted, Compression: archive.Zstd, SystemID: testSysID}
	if err := p2.Push(ctx, filepath.Join(dir, second), second); err != nil {
		t.Fatalf("push of a segment shipped ahead: %v", err)
	}
	if got := counted.total(); got > 64 {
		t.Errorf("push of a segment shipped ahead read %d bytes of wal/, want only its checksum", got)
	}
	if got := f.archived(second); !slices.Equal(got, fakeSegment(t, testSysID, 1, 2, 2)) {
		t.Error("the segment shipped ahead is not the one in pg_wal")
	}
}

// The push's own result is PostgreSQL's answer: a segment ahead that
// cannot be shipped does not fail it, and its own failure is reported
// whatever the others did.
func TestPushAheadOwnResult(t *testing.T) {
	f := newFixture(t)
	dir := pgWAL(t, 3)
	// Segment 2 is truncated: not WAL to ship.
	if err := os.Truncate(filepath.Join(dir, segName(1, 2)), 1000); err != nil {
		t.Fatal(err)
	}
	p := &Pusher{Storage: f.st, Compression: archive.Zstd, SystemID: testSysID}
	ctx := context.Background()
	if err := p.PushAhead(ctx, filepath.Join(dir, segName(1, 1)), segName(1, 1), LookAhead{Max: 8, Jobs: 2}); err != nil {
		t.Fatalf("own segment: %v, want success despite a bad segment ahead", err)
	}
	if got := f.walFiles(); !slices.Equal(got, []string{segName(1, 1) + ".zst", segName(1, 3) + ".zst"}) {
		t.Errorf("wal/ holds %v", got)
	}
	err := p.PushAhead(ctx, filepath.Join(dir, segName(1, 2)), segName(1, 2), LookAhead{Max: 8, Jobs: 2})
	if !errors.Is(err, ErrBadFile) {
		t.Errorf("own segment truncated: %v, want ErrBadFile", err)
	}
}

// In a drain, the next call's window starts with the segments its
// predecessor shipped: it skips them without reading them (their own calls
// compare them) and ships the next ones the archive lacks, so every call
// keeps its jobs busy.
func TestPushAheadSkipsArchived(t *testing.T) {
	f := newFixture(t)
	dir := pgWAL(t, 9)
	ctx := context.Background()
	p := &Pusher{Storage: f.st, Compression: archive.Zstd, SystemID: testSysID}
	first := segName(1, 1)
	if err := p.PushAhead(ctx, filepath.Join(dir, first), first, LookAhead{Max: 3, Jobs: 2}); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "archive_status", first+".ready"))
	// Segments 2-4 are archived and still ready: PostgreSQL calls for 2.
	counted := &walReads{Storage: f.st, n: map[string]int64{}}
	p2 := &Pusher{Storage: counted, Compression: archive.Zstd, SystemID: testSysID}
	second := segName(1, 2)
	if err := p2.PushAhead(ctx, filepath.Join(dir, second), second, LookAhead{Max: 3, Jobs: 2}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for seg := uint64(1); seg <= 7; seg++ {
		want = append(want, segName(1, seg)+".zst")
	}
	if got := f.walFiles(); !slices.Equal(got, want) {
		t.Fatalf("wal/ holds %v, want %v: three new segments past those archived", got, want)
	}
	if got := counted.total(); got > 64 {
		t.Errorf("read %d bytes of wal/, want only the own segment's checksum", got)
	}
	for seg := uint64(5); seg <= 7; seg++ {
		if got := f.archived(segName(1, seg)); !slices.Equal(got, fakeSegment(t, testSysID, 1, seg, seg)) {
			t.Errorf("segment %d shipped ahead is not the one in pg_wal", seg)
		}
	}
}

// failingPut fails every Put of a name containing fail.
type failingPut struct {
	archive.Storage
	fail string
}

func (f *failingPut) Put(ctx context.Context, name string, r io.Reader) error {
	if strings.Contains(name, f.fail) {
		return errors.New("disk full")
	}
	return f.Storage.Put(ctx, name, r)
}

// Each segment shipped ahead is marked on the file once it is durable in
// the archive, and PostgreSQL's call for it answers from the mark alone
// (ShippedAhead) while the file is the one shipped: same archive, cluster,
// name, size, inode, modification time and content. The segment the call
// was for, and one whose shipping failed, carry no mark.
func TestPushAheadMarksShipped(t *testing.T) {
	f := newFixture(t)
	dir := pgWAL(t, 5)
	path := func(seg uint64) string { return filepath.Join(dir, segName(1, seg)) }
	pgtest.NeedUserXattrs(t, dir)
	const arch = "/srv/walship/main"
	p := &Pusher{Storage: &failingPut{Storage: f.st, fail: segName(1, 4)}, Compression: archive.Zstd, SystemID: testSysID, ArchiveID: arch}
	if err := p.PushAhead(context.Background(), path(1), segName(1, 1), LookAhead{Max: 4, Jobs: 2}); err != nil {
		t.Fatal(err)
	}
	for seg, want := range map[uint64]bool{1: false, 2: true, 3: true, 4: false, 5: true} {
		if got := ShippedAhead(path(seg), segName(1, seg), arch, testSysID); got != want {
			t.Errorf("segment %d: shipped ahead %v, want %v", seg, got, want)
		}
	}
	// Another archive, another cluster, another name: not this mark's.
	if ShippedAhead(path(2), segName(1, 2), arch+"2", testSysID) || ShippedAhead(path(2), segName(1, 2), arch, testSysID+1) ||
		ShippedAhead(path(2), segName(1, 3), arch, testSysID) {
		t.Error("a mark answered for another archive, cluster or name")
	}
	// A file touched since, and one changed in place with its time put
	// back: no longer the file shipped.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(path(3), later, later); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path(5))
	if err != nil {
		t.Fatal(err)
	}
	fh, err := os.OpenFile(path(5), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteAt([]byte{0xAA}, 9000)
	fh.Close()
	if err := os.Chtimes(path(5), fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	for _, seg := range []uint64{3, 5} {
		if ShippedAhead(path(seg), segName(1, seg), arch, testSysID) {
			t.Errorf("segment %d changed since it was shipped, yet its mark answered", seg)
		}
	}
	// Without an ArchiveID nothing is marked.
	dir2 := pgWAL(t, 2)
	p2 := &Pusher{Storage: newFixture(t).st, Compression: archive.Zstd, SystemID: testSysID}
	if err := p2.PushAhead(context.Background(), filepath.Join(dir2, segName(1, 1)), segName(1, 1), LookAhead{Max: 1, Jobs: 1}); err != nil {
		t.Fatal(err)
	}
	if ShippedAhead(filepath.Join(dir2, segName(1, 2)), segName(1, 2), "", testSysID) {
		t.Error("a push without an ArchiveID marked what it shipped")
	}
}

// A mark that is not walship's, or damaged, is no mark.
func TestParseShippedMark(t *testing.T) {
	m := shippedMark{sysid: 7, name: segName(1, 2), size: 1 << 24, ino: 12, mtime: 1700000000123456789, sum: 0xfeed, arch: `sftp://u@h/a b"c`}
	if got, ok := parseShippedMark(m.String()); !ok || got != m {
		t.Fatalf("round trip: %+v %v, want %+v", got, ok, m)
	}
	for _, bad := range []string{"", "walship-shipped 2 " + m.String()[18:], m.String()[:40], strings.Replace(m.String(), " 12 ", " x ", 1), "junk"} {
		if _, ok := parseShippedMark(bad); ok {
			t.Errorf("%q parsed as a mark", bad)
		}
	}
}
