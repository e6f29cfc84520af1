package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/local"
	"github.com/walship/walship/internal/pgtest"
)

// archivingPrimary starts a primary with 1 MiB segments whose
// archive_command is archiveCommand, or walship push into a new archive.
func archivingPrimary(t *testing.T, archiveCommand string) (*pgtest.Cluster, string, archive.Storage) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL; skipped with -short")
	}
	bin := pgtest.Walship(t)
	dir := pgtest.TempDir(t)
	if archiveCommand == "" {
		archiveCommand = fmt.Sprintf("%s push --archive %s %%p %%f", bin, dir)
	}
	c := pgtest.New(t, pgtest.Options{
		InitdbArgs: []string{"--wal-segsize=1"},
		Conf:       []string{"archive_mode = on", "archive_command = '" + archiveCommand + "'"},
	})
	st, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return c, dir, st
}

// Every tablespace is backed up, compressed by the server or by walship,
// and restore can move one.
func TestBackupRestoreTablespace(t *testing.T) {
	for _, onServer := range []bool{true, false} {
		t.Run(fmt.Sprintf("compress on server %t", onServer), func(t *testing.T) {
			t.Parallel()
			testBackupRestoreTablespace(t, onServer)
		})
	}
}

func testBackupRestoreTablespace(t *testing.T, onServer bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, dir, st := archivingPrimary(t, "")
	ts := pgtest.TempDir(t)
	c.Exec(t, "CREATE TABLESPACE elsewhere LOCATION '"+ts+"'")
	c.Exec(t, "CREATE TABLE far TABLESPACE elsewhere AS SELECT g FROM generate_series(1, 5000) g")
	m, err := Backup(ctx, st, Options{ConnString: c.ConnString(), FastCheckpoint: true, WALTimeout: time.Minute,
		CompressOnServer: onServer})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Archives) != 2 || m.Archives[0].Name != "base.tar.zst" || m.Archives[1].Location != ts ||
		!strings.HasSuffix(m.Archives[1].Name, ".tar.zst") {
		t.Fatalf("archives %+v, want base.tar.zst and one .tar.zst at %s", m.Archives, ts)
	}
	// A server that cannot compress (PostgreSQL 13 and 14, or a build
	// without zstd) gets its backup compressed by walship.
	canZstd := pgtest.Major(t).ServerCompression() && c.QueryValue(t,
		"SELECT count(*) FROM pg_config WHERE name = 'CONFIGURE' AND setting LIKE '%--with-zstd%'") == "1"
	wantBy := map[bool]string{true: "server", false: "walship"}[onServer && canZstd]
	if m.FromStandby || m.StopLSN <= m.StartLSN || m.Files < 900 || m.Stored >= m.Size/4 || m.CompressedBy != wantBy {
		t.Errorf("backup.json: %+v, want it compressed by %s", m, wantBy)
	}

	moved := filepath.Join(pgtest.TempDir(t), "moved")
	restored := pgtest.Adopt(t, pgtest.Options{Conf: []string{"archive_mode = off"}}, func(pgdata string) {
		_, err := Restore(ctx, st, RestoreOptions{
			PGData:         pgdata,
			TablespaceMap:  map[string]string{ts: moved},
			RestoreCommand: fmt.Sprintf("%s fetch --archive %s %%f %%p", pgtest.Walship(t), dir),
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	restored.Start(t)
	restored.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
	if got := restored.QueryValue(t, "SELECT count(*) FROM far"); got != "5000" {
		t.Errorf("rows in the moved tablespace: %s, want 5000", got)
	}
	if got := restored.QueryValue(t, "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'elsewhere'"); got != moved {
		t.Errorf("tablespace location %s, want %s", got, moved)
	}

	// The original location is not empty: restoring there again is refused.
	_, err = Restore(ctx, st, RestoreOptions{PGData: filepath.Join(t.TempDir(), "data")})
	if !errors.Is(err, ErrNotEmpty) {
		t.Errorf("restore over the live tablespace: got %v, want ErrNotEmpty", err)
	}
}

// A backup whose WAL never reaches the archive fails after the timeout and
// leaves nothing behind.
func TestBackupWALTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, _, st := archivingPrimary(t, "false")
	rec := &markerRecorder{st: st}
	_, err := Backup(ctx, st, Options{ConnString: c.ConnString(), FastCheckpoint: true,
		WALTimeout: 2 * time.Second, Poll: 100 * time.Millisecond, Heartbeat: 100 * time.Millisecond, Progress: rec})
	if !errors.Is(err, ErrWALMissing) {
		t.Fatalf("got %v, want ErrWALMissing", err)
	}
	if rec.err != nil || len(rec.markers) < 2 {
		t.Errorf("while it waited for WAL the backup was in progress with markers %v (%v); want it running, renewed", rec.markers, rec.err)
	}
	l, err := List(ctx, st)
	if err != nil || len(l.Complete)+len(l.Incomplete) != 0 {
		t.Errorf("after a failed backup: %+v, %v; want nothing listed", l, err)
	}
	left, _ := os.ReadDir(filepath.Join(st.String(), archive.BackupsDir))
	if len(left) != 0 {
		t.Errorf("a failed backup left %v", left)
	}
}

// A server that refuses to compress (built without zstd, say) gets its
// backup compressed by walship instead, and the refused attempt leaves
// nothing behind.
func TestBackupServerCompressionFallback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, _, st := archivingPrimary(t, "")
	saved := serverCompressionDetail
	serverCompressionDetail = "level=999" // refused: out of range
	t.Cleanup(func() { serverCompressionDetail = saved })

	m, err := Backup(ctx, st, Options{ConnString: c.ConnString(), FastCheckpoint: true, WALTimeout: time.Minute,
		CompressOnServer: true})
	if err != nil {
		t.Fatal(err)
	}
	if m.CompressedBy != "walship" {
		t.Errorf("compressed_by %q, want walship after the server refused", m.CompressedBy)
	}
	l, err := List(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Complete) != 1 || l.Complete[0].ID != m.ID || len(l.Incomplete) != 0 {
		t.Errorf("listing %+v, want backup %s alone", l, m.ID)
	}
	entries, _ := os.ReadDir(filepath.Join(st.String(), archive.BackupsDir))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), m.ID) {
			t.Errorf("the refused attempt left %s", e.Name())
		}
	}
}

// markerRecorder is a Progress that notes, at every report, the in-progress
// markers that cleanup would see.
type markerRecorder struct {
	st      archive.Storage
	markers []string // distinct newest markers, in the order seen
	starts  []string // their start_wal
	err     error
}

func (r *markerRecorder) Report(Status) {
	c, err := ReadCensus(context.Background(), r.st, CensusOptions{})
	if err != nil || len(c.Pending) != 1 || c.Pending[0].State != Running {
		if r.err == nil {
			r.err = fmt.Errorf("census %+v, %v: want one backup running", c.Pending, err)
		}
		return
	}
	p := c.Pending[0]
	files, _ := r.st.List(context.Background(), archive.BackupsDir+"/"+p.ID)
	name := newestMarker(files)
	if len(r.markers) == 0 || r.markers[len(r.markers)-1] != name {
		r.markers = append(r.markers, name)
		r.starts = append(r.starts, p.Marker.StartWAL)
	}
}

// A backup in progress keeps a marker with its start, renewed while it
// runs and removed once it is complete; --max-rate slows it down.
func TestBackupInProgressMarker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, _, st := archivingPrimary(t, "")
	c.Exec(t, "CREATE TABLE pad AS SELECT g, md5(g::text) AS m FROM generate_series(1, 20000) g")
	rec := &markerRecorder{st: st}
	start := time.Now()
	m, err := Backup(ctx, st, Options{ConnString: c.ConnString(), FastCheckpoint: true, WALTimeout: time.Minute,
		Heartbeat: 50 * time.Millisecond, MaxRate: 8 << 20, Progress: rec})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("backup of %d bytes took %v; markers seen: %d", m.Size, took, len(rec.markers))
	if rec.err != nil || len(rec.markers) < 2 {
		t.Errorf("while it ran the backup had markers %v (%v); want it running, renewed", rec.markers, rec.err)
	}
	for _, s := range rec.starts {
		if s != m.StartWAL {
			t.Errorf("a marker names start segment %s, backup.json %s", s, m.StartWAL)
		}
	}
	if min := time.Duration(m.Size/(8<<20)) * time.Second; took < min*3/4 {
		t.Errorf("a backup of %d bytes at 8 MiB/s took %v, want about %v", m.Size, took, min)
	}
	files, err := st.List(ctx, m.Dir())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if markerName().MatchString(f.Name) {
			t.Errorf("the complete backup kept its marker %s", f.Name)
		}
	}
	census, err := ReadCensus(ctx, st, CensusOptions{})
	if err != nil || len(census.Pending) != 0 || len(census.Complete) != 1 {
		t.Errorf("after the backup: %+v, %v; want one complete backup and none in progress", census, err)
	}
}
