package waiter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

func spoolEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// Fill names an entry only once it is verified and on disk: a killed
// prefetcher's leftovers (Restore's temporary files, verified files not
// yet synced) are never served, and the next Fill removes them.
func TestSpoolFillLeavesOnlyWholeEntries(t *testing.T) {
	ctx := context.Background()
	st := newArchive(t).st
	putSegments(t, st, 1, 3, 5)
	sp := &Spool{Dir: filepath.Join(t.TempDir(), "spool")}
	exp := Expect{SystemID: sysID, SegmentSize: segSize}
	if err := os.MkdirAll(sp.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A killed prefetcher's verified, unsynced copy of segment 4, and a
	// half-written download of 5.
	left4 := filepath.Join(sp.Dir, fillPrefix+"000000010000000000000004")
	left5 := filepath.Join(sp.Dir, ".walship-restore-123")
	os.WriteFile(left4, segment(t, sysID, 1, 4), 0o600)
	os.WriteFile(left5, segment(t, sysID, 1, 5)[:1000], 0o600)

	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	if ok, err := sp.Take("000000010000000000000004", dest, exp); ok || err != nil {
		t.Errorf("Take of an entry not yet named: %v, %v; want not there", ok, err)
	}
	if n, err := sp.Fill(ctx, st, exp, "000000010000000000000003", 4, segSize); err != nil || n != 2 {
		t.Fatalf("Fill: %d, %v; want 2", n, err)
	}
	got := spoolEntries(t, sp.Dir)
	want := []string{".lock", "000000010000000000000004", "000000010000000000000005"}
	if !slices.Equal(got, want) {
		t.Errorf("spool after Fill: %v, want %v", got, want)
	}
}

// Take hands over only what is still the verified segment: an entry of
// another cluster, of another segment, or cut short is removed, and Fetch
// then reads the archive.
func TestSpoolTakeChecksEntry(t *testing.T) {
	ctx := context.Background()
	st := newArchive(t).st
	putSegments(t, st, 1, 4, 4)
	sp := &Spool{Dir: filepath.Join(t.TempDir(), "spool")}
	exp := Expect{SystemID: sysID, SegmentSize: segSize}
	os.MkdirAll(sp.Dir, 0o700)
	const n4 = "000000010000000000000004"
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"another cluster's", segment(t, sysID+1, 1, 4)},
		{"another segment's", segment(t, sysID, 1, 5)},
		{"truncated", segment(t, sysID, 1, 4)[:segSize/2]},
		{"zeros", make([]byte, segSize)},
	} {
		path := filepath.Join(sp.Dir, n4)
		if err := os.WriteFile(path, tc.b, 0o600); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		if ok, err := sp.Take(n4, dest, exp); ok || err == nil {
			t.Errorf("%s entry: Take %v, %v; want refused", tc.name, ok, err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s entry left in the spool", tc.name)
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Errorf("%s entry handed over", tc.name)
		}
		os.WriteFile(path, tc.b, 0o600)
		f := &Fetcher{Storage: st, Expect: exp, Spool: sp}
		fakeClock(f, nil)
		if err := f.Fetch(ctx, n4, dest); err != nil {
			t.Fatalf("%s entry: Fetch: %v", tc.name, err)
		}
		if b, _ := os.ReadFile(dest); string(b) != string(segment(t, sysID, 1, 4)) {
			t.Errorf("%s entry: Fetch did not restore the archived segment", tc.name)
		}
	}
}

// Prune keeps at most n segments after the one served, on its timeline:
// the spool's disk use is bounded by --prefetch, whatever an earlier run
// or a timeline switch left.
func TestSpoolPruneBound(t *testing.T) {
	sp := &Spool{Dir: t.TempDir()}
	names := []string{".lock", fillPrefix + "00000001000000000000000A"}
	for seg := wal.SegNo(1); seg <= 20; seg++ {
		names = append(names, wal.SegmentName(1, seg, segSize), wal.SegmentName(2, seg, segSize))
	}
	names = append(names, "00000002.history", "junk")
	for _, n := range names {
		os.WriteFile(filepath.Join(sp.Dir, n), nil, 0o600)
	}
	if err := sp.Prune(wal.SegmentName(2, 8, segSize), 4, segSize); err != nil {
		t.Fatal(err)
	}
	var want []string
	for seg := wal.SegNo(8); seg <= 12; seg++ {
		want = append(want, wal.SegmentName(2, seg, segSize))
	}
	want = append(want, names[:2]...)
	slices.Sort(want)
	got := spoolEntries(t, sp.Dir)
	if !slices.Equal(got, want) {
		t.Errorf("after Prune(2/8, 4):\n got %s\nwant %s", strings.Join(got, " "), strings.Join(want, " "))
	}
}

// openCounter counts the Opens of WAL segments (a download each).
type openCounter struct {
	archive.Storage
	mu    sync.Mutex
	names []string
}

func (o *openCounter) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if n, err := wal.ParseName(path.Base(strings.TrimSuffix(name, ".zst"))); err == nil && n.Kind == wal.Segment {
		o.mu.Lock()
		o.names = append(o.names, n.String())
		o.mu.Unlock()
	}
	return o.Storage.Open(ctx, name)
}

func (o *openCounter) opened() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.names)
}

// Fill writes a segment back to disk while it downloads the next one, but
// never more than that one: at most two segments are dirty. Names come in
// order, each once its file is on disk.
func TestSpoolFillOverlapsWriteBack(t *testing.T) {
	st := &openCounter{Storage: newArchive(t).st}
	putSegments(t, st.Storage, 1, 1, 6)
	sp := &Spool{Dir: filepath.Join(t.TempDir(), "spool")}
	exp := Expect{SystemID: sysID, SegmentSize: segSize}
	release := make(chan struct{})
	synced := make(chan string, 10)
	sp.syncFile = func(p string) error {
		if strings.HasSuffix(p, "000000010000000000000002") {
			<-release // the first write-back hangs until the test says
		}
		synced <- filepath.Base(p)
		return nil
	}
	done := make(chan error, 1)
	go func() {
		n, err := sp.Fill(context.Background(), st, exp, "000000010000000000000001", 4, segSize)
		if err == nil && n != 4 {
			err = fmt.Errorf("filled %d, want 4", n)
		}
		done <- err
	}()
	// While segment 2 is written back, segment 3 downloads, and nothing
	// after it.
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(st.opened(), "000000010000000000000003") {
		if time.Now().After(deadline) {
			t.Fatalf("segment 3 not downloaded while 2 was written back; opened %v", st.opened())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if got := st.opened(); slices.Contains(got, "000000010000000000000004") {
		t.Errorf("opened %v while segment 2 was not on disk yet: more than two segments dirty", got)
	}
	if got := spoolEntries(t, sp.Dir); slices.Contains(got, "000000010000000000000002") || slices.Contains(got, "000000010000000000000003") {
		t.Errorf("spool %v names segments not yet on disk", got)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(synced)
	var order []string
	for s := range synced {
		order = append(order, strings.TrimPrefix(s, fillPrefix))
	}
	want := []string{"000000010000000000000002", "000000010000000000000003", "000000010000000000000004", "000000010000000000000005"}
	if !slices.Equal(order, want) {
		t.Errorf("written back in the order %v, want %v", order, want)
	}
	if got := spoolEntries(t, sp.Dir); !slices.Equal(got, append([]string{".lock"}, want...)) {
		t.Errorf("spool after Fill: %v", got)
	}
}

// A write-back that fails ends the Fill with its error, names nothing
// after it, leaves no temporary file, and downloads at most one more.
func TestSpoolFillWriteBackFails(t *testing.T) {
	st := &openCounter{Storage: newArchive(t).st}
	putSegments(t, st.Storage, 1, 1, 9)
	sp := &Spool{Dir: filepath.Join(t.TempDir(), "spool")}
	exp := Expect{SystemID: sysID, SegmentSize: segSize}
	full := errors.New("no space left on device")
	sp.syncFile = func(p string) error {
		if strings.HasSuffix(p, "000000010000000000000003") {
			return full
		}
		return nil
	}
	n, err := sp.Fill(context.Background(), st, exp, "000000010000000000000001", 8, segSize)
	if !errors.Is(err, full) || n != 1 {
		t.Fatalf("Fill: %d, %v; want 1 and the write-back's error", n, err)
	}
	if got := spoolEntries(t, sp.Dir); !slices.Equal(got, []string{".lock", "000000010000000000000002"}) {
		t.Errorf("spool after a failed write-back: %v", got)
	}
	if got := st.opened(); len(got) > 3 {
		t.Errorf("downloaded %v: went on after the write-back failed", got)
	}
}

// Filling tells whether a Fill holds the spool's lock.
func TestSpoolFilling(t *testing.T) {
	sp := &Spool{Dir: filepath.Join(t.TempDir(), "spool")}
	if sp.Filling() {
		t.Error("Filling with no spool directory")
	}
	st := newArchive(t).st
	putSegments(t, st, 1, 1, 3)
	exp := Expect{SystemID: sysID, SegmentSize: segSize}
	inFill := make(chan struct{})
	release := make(chan struct{})
	sp.syncFile = func(string) error {
		select {
		case inFill <- struct{}{}:
			<-release
		default:
		}
		return nil
	}
	done := make(chan struct{})
	go func() { sp.Fill(context.Background(), st, exp, "000000010000000000000001", 2, segSize); close(done) }()
	<-inFill
	if !sp.Filling() {
		t.Error("not Filling while a Fill holds the lock")
	}
	close(release)
	<-done
	if sp.Filling() {
		t.Error("Filling after the Fill returned")
	}
}
