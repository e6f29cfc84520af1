package waiter

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
