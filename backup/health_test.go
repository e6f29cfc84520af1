package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/local"
	"github.com/walship/walship/wal"
)

// A Tracker sees new backups and segments, a gap made by removing a
// segment, and the backup that gap makes unusable.
func TestTracker(t *testing.T) {
	st := testArchive(t)
	ctx := context.Background()
	tr := &Tracker{Storage: st}
	h, err := tr.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Backups != 0 || h.WAL != nil || h.Newest != nil {
		t.Fatalf("empty archive: %+v", h)
	}
	putSegments(t, st, 1, 1, 6)
	putBackup(t, st, "20260101T000000Z", 1, 2, 3)
	putBackup(t, st, "20260102T000000Z", 1, 4, 5)
	h, err = tr.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Backups != 2 || h.Newest.ID != "20260102T000000Z" || h.Oldest.ID != "20260101T000000Z" {
		t.Errorf("backups: %d, newest %v, oldest %v", h.Backups, h.Newest, h.Oldest)
	}
	if want := wal.SegmentName(1, 6, testSegSize); h.WAL == nil || h.WAL.Segment != want || h.WAL.End != wal.SegNo(7).Start(testSegSize) {
		t.Errorf("newest WAL %+v, want %s", h.WAL, want)
	}
	if len(h.Unusable) != 0 || h.Timelines[0].Gaps != 0 {
		t.Errorf("complete archive: unusable %v, timelines %+v", h.Unusable, h.Timelines)
	}

	if err := st.Remove(ctx, archive.WALPath(wal.SegmentName(1, 3, testSegSize), ".zst")); err != nil {
		t.Fatal(err)
	}
	putFile(t, st, archive.TailDir(wal.SegmentName(1, 7, testSegSize))+"/"+archive.IncrementName(0, 0x2000, archive.None), "x")
	h, err = tr.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tl := h.Timelines[0]; tl.Gaps != 1 || tl.Missing != 1 || tl.Segments != 5 {
		t.Errorf("after removing a segment: %+v", tl)
	}
	for _, m := range h.Catalog.Backups {
		if _, missing := h.Catalog.Chain(m); h.Catalog.chainComplete(m) != (len(missing) == 0) {
			t.Errorf("backup %s: chainComplete %v, Chain misses %v", m.ID, h.Catalog.chainComplete(m), missing)
		}
	}
	if !slices.Equal(h.Unusable, []string{"20260101T000000Z"}) {
		t.Errorf("unusable %v, want the backup before the gap", h.Unusable)
	}
	if want := wal.SegNo(7).Start(testSegSize) + 0x2000; h.WAL.Through() != want {
		t.Errorf("through %s, want %s (the tail)", h.WAL.Through(), want)
	}
	if err := st.Remove(ctx, metaPath("20260102T000000Z")); err != nil {
		t.Fatal(err)
	}
	if h, err = tr.Refresh(ctx); err != nil || h.Backups != 1 || h.Incomplete != 1 {
		t.Errorf("after removing a backup.json: %+v, %v", h, err)
	}
}

// benchRepo makes an archive of segs segments and backups backups, with
// files of a few bytes: a Tracker reads listings, not segments.
func benchRepo(b *testing.B, segs, backups int) archive.Storage {
	dir := b.TempDir()
	st, err := local.New(dir)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := archive.InitIdentity(ctx, st, archive.Identity{Format: 1, SystemID: testSysID, PGVersion: 15,
		SegmentSize: 16 << 20, BlockSize: 8192, Created: time.Now()}); err != nil {
		b.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "wal"), 0o755)
	for s := 1; s <= segs; s++ {
		name := wal.SegmentName(1, wal.SegNo(s), 16<<20) + ".zst"
		if err := os.WriteFile(filepath.Join(dir, "wal", name), []byte("x"), 0o640); err != nil {
			b.Fatal(err)
		}
	}
	for i := range backups {
		start := wal.SegNo(1 + i*segs/backups)
		tm := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour)
		m := Meta{Format: MetaFormat, ID: tm.Format(idLayout), StartTime: tm, StopTime: tm.Add(time.Minute),
			StartLSN: start.Start(16<<20) + 0x28, StopLSN: (start + 1).Start(16<<20) + 0x100,
			StartTimeline: 1, StopTimeline: 1, SystemID: testSysID, SegmentSize: 16 << 20,
			Archives: []ArchiveFile{{Name: "base.tar"}}, Manifest: "backup_manifest"}
		if err := writeMeta(ctx, st, m); err != nil {
			b.Fatal(err)
		}
	}
	return st
}

// BenchmarkTrackerRefresh is one refresh of walship exporter on an archive
// of 10,000 segments and 20 backups, after the first (which reads the
// backup.json files).
func BenchmarkTrackerRefresh(b *testing.B) {
	for _, segs := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("segments=%d", segs), func(b *testing.B) {
			if segs > 10_000 && testing.Short() {
				b.Skip("short")
			}
			tr := &Tracker{Storage: benchRepo(b, segs, 20)}
			if _, err := tr.Refresh(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				h, err := tr.Refresh(context.Background())
				if err != nil || h.Timelines[0].Segments != segs || len(h.Unusable) != 0 {
					b.Fatalf("%+v %v", h, err)
				}
			}
		})
	}
}
