package waiter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/backup"
	"github.com/walship/walship/wal"
)

// cleanupNow is the clock of the cleanup tests; backup ids are relative to
// it.
var cleanupNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func backupID(ago time.Duration) string { return cleanupNow.Add(-ago).Format("20060102T150405Z") }

// backupEnv is an archive holding segments 1 to 8 of timeline 1.
type backupEnv struct {
	*env
	logs bytes.Buffer
}

func newBackupEnv(t *testing.T) *backupEnv {
	e := &backupEnv{env: newArchive(t)}
	for s := wal.SegNo(1); s <= 8; s++ {
		e.put(name(s), segment(t, sysID, 1, s), archive.Zstd)
	}
	return e
}

func (e *backupEnv) putFile(path, content string) {
	e.t.Helper()
	if err := e.st.Put(context.Background(), path, strings.NewReader(content)); err != nil {
		e.t.Fatal(err)
	}
}

// complete records a complete backup starting in segment start, as
// walship backup writes backup.json.
func (e *backupEnv) complete(id string, start wal.SegNo) {
	e.t.Helper()
	m := backup.Meta{Format: backup.MetaFormat, ID: id, StartLSN: start.Start(segSize) + 0x28, StopLSN: start.Start(segSize) + 0x1000,
		StartTimeline: 1, StopTimeline: 1, StartWAL: name(start), StopWAL: name(start), SegmentSize: segSize, SystemID: sysID,
		Archives: []backup.ArchiveFile{{Name: "base.tar.zst"}}, Manifest: "backup_manifest.zst"}
	b, err := json.Marshal(m)
	if err != nil {
		e.t.Fatal(err)
	}
	e.putFile("backups/"+id+".started", "{}")
	e.putFile("backups/"+id+".json", string(b))
}

// running records backup id in progress since segment start, its marker
// renewed at heartbeat: the files walship backup writes while it runs.
func (e *backupEnv) running(id string, start wal.SegNo, heartbeat time.Time) {
	e.t.Helper()
	m := backup.InProgress{Format: backup.InProgressFormat, ID: id, StartLSN: start.Start(segSize) + 0x28, StartTimeline: 1,
		StartWAL: name(start), Heartbeat: heartbeat, Host: "db1", PID: 4242}
	b, err := json.Marshal(m)
	if err != nil {
		e.t.Fatal(err)
	}
	e.putFile("backups/"+id+".started", "{}")
	e.putFile("backups/"+id+"/inprogress-000003.json", string(b))
	e.putFile("backups/"+id+"/base.tar.zst", "streaming")
}

// backups is the Backups hook walship cleanup passes.
func (e *backupEnv) backups(ctx context.Context) (Keep, error) {
	c, err := backup.ReadCensus(ctx, e.st, backup.CensusOptions{Now: func() time.Time { return cleanupNow },
		Log: slog.New(slog.NewTextHandler(&e.logs, nil))})
	if err != nil {
		return Keep{}, err
	}
	from, all := c.KeepWAL(c.Complete)
	return Keep{From: from, All: all}, nil
}

func (e *backupEnv) left() []string {
	e.t.Helper()
	fis, err := e.st.List(context.Background(), archive.WALDir)
	if err != nil {
		e.t.Fatal(err)
	}
	var segs []string
	for _, fi := range fis {
		segs = append(segs, strings.TrimSuffix(fi.Name, ".zst"))
	}
	return segs
}

func segs(first, last wal.SegNo) []string {
	var names []string
	for s := first; s <= last; s++ {
		names = append(names, name(s))
	}
	return names
}

// Cleanup keeps the WAL of backups in progress, with or without complete
// backups, ignores (with a warning) those whose marker went stale, and
// keeps everything while a backup is starting.
func TestCleanupKeepsBackupsInProgress(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		setup func(e *backupEnv)
		left  []string
		warn  string
	}{
		{"no backup", func(*backupEnv) {}, segs(7, 8), ""},
		{"a first backup running", func(e *backupEnv) {
			e.running(backupID(time.Hour), 3, cleanupNow.Add(-time.Minute))
		}, segs(3, 8), ""},
		{"running, and an older complete backup", func(e *backupEnv) {
			e.complete(backupID(30*time.Hour), 2)
			e.running(backupID(time.Hour), 5, cleanupNow.Add(-time.Minute))
		}, segs(2, 8), ""},
		{"running since before the complete backups", func(e *backupEnv) {
			e.running(backupID(5*time.Hour), 3, cleanupNow.Add(-time.Minute))
			e.complete(backupID(2*time.Hour), 5)
			e.complete(backupID(time.Hour), 6)
		}, segs(3, 8), ""},
		{"a complete backup and one running past %r", func(e *backupEnv) {
			e.complete(backupID(2*time.Hour), 5)
			e.running(backupID(time.Hour), 8, cleanupNow.Add(-time.Minute))
		}, segs(5, 8), ""},
		{"a stale marker", func(e *backupEnv) {
			e.running(backupID(5*time.Hour), 3, cleanupNow.Add(-3*time.Hour))
		}, segs(7, 8), backupID(5 * time.Hour)},
		{"a backup starting", func(e *backupEnv) {
			e.complete(backupID(2*time.Hour), 5)
			e.putFile("backups/"+backupID(time.Minute)+".started", "{}")
		}, segs(1, 8), ""},
		{"a start marker without a marker, long ago", func(e *backupEnv) {
			e.putFile("backups/"+backupID(3*time.Hour)+".started", "{}")
		}, segs(7, 8), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newBackupEnv(t)
			tc.setup(e)
			removed, err := Cleanup(ctx, e.st, name(7), CleanupOptions{Backups: e.backups})
			if err != nil {
				t.Fatal(err)
			}
			if got := e.left(); !slices.Equal(got, tc.left) {
				t.Errorf("left %v, want %v (removed %v)", got, tc.left, removed)
			}
			warned := strings.Contains(e.logs.String(), "level=WARN")
			if warned != (tc.warn != "") || !strings.Contains(e.logs.String(), tc.warn) {
				t.Errorf("logged %q; want a warning naming %q", e.logs.String(), tc.warn)
			}
		})
	}
}

// When the backups or their markers cannot be read, nothing is removed.
func TestCleanupUnreadableBackups(t *testing.T) {
	ctx := context.Background()
	id := backupID(time.Hour)
	for _, tc := range []struct {
		name  string
		setup func(e *backupEnv)
	}{
		{"a damaged marker", func(e *backupEnv) {
			e.putFile("backups/"+id+".started", "{}")
			e.putFile("backups/"+id+"/inprogress-000001.json", "{damaged")
		}},
		{"a marker of a later format", func(e *backupEnv) {
			e.running(id, 3, cleanupNow)
			e.putFile("backups/"+id+"/inprogress-000004.json", `{"format": 99, "id": "`+id+`"}`)
		}},
		{"a damaged backup.json", func(e *backupEnv) {
			e.putFile("backups/"+id+".json", "{damaged")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newBackupEnv(t)
			tc.setup(e)
			removed, err := Cleanup(ctx, e.st, name(7), CleanupOptions{Backups: e.backups})
			if err == nil || len(removed) != 0 {
				t.Errorf("removed %v, error %v; want an error and nothing removed", removed, err)
			}
			if got := e.left(); !slices.Equal(got, segs(1, 8)) {
				t.Errorf("left %v, want every segment", got)
			}
		})
	}

	e := newBackupEnv(t)
	calls := 0
	_, err := Cleanup(ctx, e.st, name(7), CleanupOptions{KeepFrom: name(6), DryRun: true,
		Backups: func(context.Context) (Keep, error) { calls++; return Keep{}, errors.New("connection reset") }})
	if err == nil || !strings.Contains(err.Error(), "nothing was removed") || calls != 1 {
		t.Errorf("a failing Backups hook: %v after %d calls; want an error saying nothing was removed", err, calls)
	}
	if got := e.left(); !slices.Equal(got, segs(1, 8)) {
		t.Errorf("left %v, want every segment", got)
	}
}

// KeepFrom and the Backups hook combine: the earlier wins.
func TestCleanupKeepFromAndBackups(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		keepFrom, hook string
		left           []string
	}{
		{name(4), name(5), segs(4, 8)},
		{name(5), name(3), segs(3, 8)},
		{"", "", segs(6, 8)},
	} {
		t.Run(fmt.Sprintf("%s and %s", tc.keepFrom, tc.hook), func(t *testing.T) {
			e := newBackupEnv(t)
			_, err := Cleanup(ctx, e.st, name(6), CleanupOptions{KeepFrom: tc.keepFrom,
				Backups: func(context.Context) (Keep, error) { return Keep{From: tc.hook}, nil }})
			if err != nil {
				t.Fatal(err)
			}
			if got := e.left(); !slices.Equal(got, tc.left) {
				t.Errorf("left %v, want %v", got, tc.left)
			}
		})
	}
}

// A raw segment goes with its checksum file, and a pg_standby archive's
// segments at the root are cleaned up as well.
func TestCleanupRawAndFlat(t *testing.T) {
	ctx := context.Background()
	e := newArchive(t)
	e.put(name(1), []byte("raw one"), archive.None)
	e.put(name(3), []byte("raw three"), archive.None)
	for _, n := range []string{name(1), name(2), name(3), "00000002.history"} {
		if err := os.WriteFile(filepath.Join(e.root, n), []byte("flat"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := Cleanup(ctx, e.st, name(3), CleanupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(removed, " "), name(1)+" "+name(1)+" "+name(2); got != want {
		t.Errorf("removed %q, want %q", got, want)
	}
	for _, gone := range []string{"wal/" + name(1), "wal/" + name(1) + archive.ChecksumSuffix, name(1), name(2)} {
		if _, err := os.Stat(filepath.Join(e.root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", gone, err)
		}
	}
	for _, kept := range []string{"wal/" + name(3), "wal/" + name(3) + archive.ChecksumSuffix, name(3), "00000002.history"} {
		if _, err := os.Stat(filepath.Join(e.root, kept)); err != nil {
			t.Errorf("%s removed: %v", kept, err)
		}
	}
}
