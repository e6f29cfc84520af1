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
	wantBy := map[bool]string{true: "server", false: "walship"}[onServer]
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
	_, err := Backup(ctx, st, Options{ConnString: c.ConnString(), FastCheckpoint: true,
		WALTimeout: 2 * time.Second, Poll: 100 * time.Millisecond})
	if !errors.Is(err, ErrWALMissing) {
		t.Fatalf("got %v, want ErrWALMissing", err)
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
