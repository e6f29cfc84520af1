package backup

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

func TestCatalogGapsAndChain(t *testing.T) {
	ctx := context.Background()
	st := testArchive(t)
	putSegments(t, st, 1, 2, 4)
	putSegments(t, st, 1, 7, 8) // 5 and 6 missing
	// Timeline 2 left timeline 1 in segment 8; 3 left 2 in segment 10.
	putFile(t, st, archive.WALPath("00000002.history", ""), string(wal.FormatHistory([]wal.HistoryEntry{
		{TLI: 1, Switch: wal.SegNo(8).Start(testSegSize) + 0x200}})))
	putFile(t, st, archive.WALPath("00000003.history", ""), string(wal.FormatHistory([]wal.HistoryEntry{
		{TLI: 1, Switch: wal.SegNo(8).Start(testSegSize) + 0x200}, {TLI: 2, Switch: wal.SegNo(10).Start(testSegSize)}})))
	putSegments(t, st, 2, 8, 9)
	putSegments(t, st, 3, 10, 12)
	putFile(t, st, archive.WALPath("000000010000000000000008.partial", ""), "")
	early := putBackup(t, st, "20261122T010000Z", 1, 2, 3)
	late := putBackup(t, st, "20261122T020000Z", 1, 7, 7)
	onTwo := putBackup(t, st, "20261122T030000Z", 2, 9, 9)

	c, err := ReadCatalog(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tl := range c.Timelines {
		got = append(got, fmt.Sprintf("%d:%s-%s/%d%v", tl.Timeline, tl.First[16:], tl.Last[16:], tl.Segments, tl.Gaps))
	}
	want := "1:00000002-00000008/5[{000000010000000000000005 000000010000000000000006}] 2:00000008-00000009/2[] 3:0000000A-0000000C/3[]"
	if strings.Join(got, " ") != want {
		t.Errorf("timelines:\n got %s\nwant %s", strings.Join(got, " "), want)
	}

	for _, tc := range []struct {
		m       Meta
		need    int
		missing string
	}{
		// 2..7 on timeline 1 (5 and 6 missing), 8..9 on 2, 10..12 on 3.
		{early, 11, "[000000010000000000000005 000000010000000000000006]"},
		{late, 6, "[]"},
		{onTwo, 4, "[]"},
	} {
		need, missing := c.Chain(tc.m)
		if need != tc.need || fmt.Sprint(missing) != tc.missing {
			t.Errorf("Chain(%s) = %d, %v; want %d, %s", tc.m.ID, need, missing, tc.need, tc.missing)
		}
	}
}

func TestVerifyFindsDamage(t *testing.T) {
	ctx := context.Background()
	st := testArchive(t)
	putSegments(t, st, 1, 2, 5)
	m := putBackup(t, st, "20261122T010000Z", 1, 2, 2)
	// The backup's files: an empty tar and a manifest with no files.
	putFile(t, st, Path(m.ID, "base.tar"), string(make([]byte, 1024)))
	putFile(t, st, Path(m.ID, "backup_manifest"), string(makeManifest(map[string]string{})))
	_, r, err := Verify(ctx, st, nil)
	if err != nil || len(r.Problems) != 0 || r.WALFiles != 4 {
		t.Fatalf("healthy archive: %+v, %v", r, err)
	}

	if err := st.Remove(ctx, archive.WALPath("000000010000000000000004", ".zst")); err != nil {
		t.Fatal(err)
	}
	// A segment stored under another's name, and a damaged zstd file.
	putFile(t, st, archive.WALPath("000000010000000000000007", ""), string(segment(1, 6)))
	putFile(t, st, archive.WALPath("000000010000000000000006", ".zst"), "not zstd at all")
	_, r, err = Verify(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range r.Problems {
		got = append(got, p.File)
	}
	want := "[wal/000000010000000000000006 wal/000000010000000000000007 000000010000000000000004]"
	if fmt.Sprint(got) != want {
		t.Errorf("problems in %v, want %s: %+v", got, want, r.Problems)
	}
}

func TestExpire(t *testing.T) {
	ctx := context.Background()
	st := testArchive(t)
	putSegments(t, st, 1, 2, 9)
	putFile(t, st, archive.WALPath("00000002.history", ""), "1\t0/9000000\tx\n")
	putFile(t, st, archive.WALPath("000000010000000000000003.00000028.backup", ""), "label")
	putBackup(t, st, "20261101T010000Z", 1, 3, 3)
	putFile(t, st, Path("20261101T010000Z", "base.tar.zst"), "data")
	putFile(t, st, startedPath("20261101T013000Z"), "{}") // interrupted
	putFile(t, st, Path("20261101T013000Z", "base.tar.zst"), "half")
	putBackup(t, st, "20261101T020000Z", 1, 5, 5)
	putBackup(t, st, "20261101T030000Z", 1, 7, 7)
	putFile(t, st, startedPath("20261101T040000Z"), "{}") // interrupted, after the oldest kept

	if _, err := Expire(ctx, st, ExpireOptions{}); err == nil {
		t.Errorf("Expire keeping 0: no error")
	}
	// 20261101T013000Z and 20261101T040000Z died before writing a marker,
	// over a day ago; only the first started before the oldest kept backup.
	now := func() time.Time { return time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC) }
	dry, err := Expire(ctx, st, ExpireOptions{Keep: 2, DryRun: true, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ex, err := Expire(ctx, st, ExpireOptions{Keep: 2, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(dry.Backups, dry.WAL) != fmt.Sprint(ex.Backups, ex.WAL) {
		t.Errorf("dry run %+v differs from the real one %+v", dry, ex)
	}
	if fmt.Sprintf("%v %v %s", ex.Backups, ex.Incomplete, ex.OldestKept) != "[20261101T010000Z] [20261101T013000Z] 20261101T020000Z" {
		t.Errorf("expired %+v", ex)
	}
	l, _ := List(ctx, st)
	if ids(l.Complete) != "[20261101T020000Z 20261101T030000Z]" || fmt.Sprint(l.Incomplete) != "[20261101T040000Z]" {
		t.Errorf("left %s and %v", ids(l.Complete), l.Incomplete)
	}
	files, _ := st.List(ctx, archive.WALDir)
	var left []string
	for _, f := range files {
		left = append(left, f.Name)
	}
	want := "[00000001000000000000000" // segments 5..9 and the history file
	if len(left) != 6 || !strings.HasPrefix(fmt.Sprint(left), want+"5.zst") || left[5] != "00000002.history" {
		t.Errorf("WAL left: %v", left)
	}
	if left, _ := st.List(ctx, "backups/20261101T010000Z"); len(left) != 0 {
		t.Errorf("files of the expired backup left: %v", left)
	}
}
