package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/local"
	"github.com/walship/walship/internal/pgtest"
	"github.com/walship/walship/wal"
)

// pushConf returns the postgresql.conf lines of a primary archiving into arch
// with walship push.
func pushConf(bin, arch string, extra ...string) []string {
	conf := contribConf("primary.conf", contribPaths(bin, arch, ""))
	conf = append(conf, "wal_keep_size = '2GB'") // keep every segment in pg_wal to compare with
	return append(conf, extra...)
}

// archivedWAL returns the decompressed content of an archived WAL file.
func archivedWAL(t *testing.T, st archive.Storage, name string) []byte {
	t.Helper()
	rc, _, err := archive.OpenWAL(context.Background(), st, name)
	if err != nil {
		t.Fatalf("open archived %s: %v", name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read archived %s: %v", name, err)
	}
	return b
}

func openLocal(t *testing.T, dir string) archive.Storage {
	t.Helper()
	st, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// sameAsPGWAL checks that each of names is archived byte for byte as it is
// in pg's pg_wal.
func sameAsPGWAL(t *testing.T, st archive.Storage, pg *pgtest.Cluster, names []string) {
	t.Helper()
	for _, name := range names {
		orig, err := os.ReadFile(filepath.Join(pg.DataDir, "pg_wal", name))
		if err != nil {
			t.Fatalf("read original %s: %v", name, err)
		}
		if !bytes.Equal(archivedWAL(t, st, name), orig) {
			t.Errorf("archived %s differs from pg_wal/%s", name, name)
		}
	}
}

// archivedSegments lists the segment names in the archive, without suffix.
func archivedSegments(t *testing.T, st archive.Storage) []string {
	t.Helper()
	fis, err := st.List(context.Background(), archive.WALDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fi := range fis {
		base := archive.TrimCompression(fi.Name)
		if n, err := wal.ParseName(base); err == nil && n.Kind == wal.Segment {
			names = append(names, base)
		}
	}
	return names
}

// A real primary archives 30+ segments with walship push: every one is in the
// archive, byte for byte, and the archiver never failed.
func TestPushArchivesEverySegment(t *testing.T) {
	bin := pgtest.Walship(t)
	arch := pgtest.TempDir(t)
	pg := pgtest.New(t, pgtest.Options{
		InitdbArgs: []string{"--wal-segsize=1"},
		Conf:       pushConf(bin, arch),
	})
	pg.Exec(t, "CREATE TABLE t (id int, payload text)")
	var last string
	for i := 0; i < 32; i++ {
		pg.Exec(t, "INSERT INTO t SELECT g, md5(random()::text) FROM generate_series(1, 2000) g")
		last = pg.SwitchWAL(t)
	}
	pg.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", last, 60*time.Second)
	if got := pg.QueryValue(t, "SELECT failed_count FROM pg_stat_archiver"); got != "0" {
		t.Errorf("pg_stat_archiver.failed_count = %s, want 0\n%s", got, pg.LogTail(40))
	}

	st := openLocal(t, arch)
	names := archivedSegments(t, st)
	if len(names) < 32 {
		t.Fatalf("archive holds %d segments, want at least 32", len(names))
	}
	// Contiguous from the first segment to the last switched one.
	first, _ := wal.ParseName(names[0])
	for i, name := range names {
		want := wal.SegmentName(1, wal.SegNo(uint64(first.Seg)+uint64(i)), 1<<20)
		if name != want {
			t.Fatalf("archived segment %d is %s, want %s (a gap)", i, name, want)
		}
	}
	if names[len(names)-1] != last {
		t.Errorf("last archived segment %s, want %s", names[len(names)-1], last)
	}
	sameAsPGWAL(t, st, pg, names)

	id, err := archive.ReadIdentity(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	sysid := pg.QueryValue(t, "SELECT system_identifier FROM pg_control_system()")
	if strconv.FormatUint(id.SystemID, 10) != sysid || id.SegmentSize != 1<<20 || id.PGVersion < 12 {
		t.Errorf("walship.json = %+v, want system identifier %s and 1 MiB segments", id, sysid)
	}
}

// With PostgreSQL's default 16 MiB segments too.
func TestPushDefaultSegmentSize(t *testing.T) {
	bin := pgtest.Walship(t)
	arch := pgtest.TempDir(t)
	pg := pgtest.New(t, pgtest.Options{Conf: pushConf(bin, arch)})
	var names []string
	for i := 0; i < 3; i++ {
		pg.Exec(t, "CREATE TABLE IF NOT EXISTS t AS SELECT g FROM generate_series(1, 1000) g")
		names = append(names, pg.SwitchWAL(t))
	}
	pg.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", names[2], 60*time.Second)
	st := openLocal(t, arch)
	for _, name := range names {
		orig, err := os.ReadFile(filepath.Join(pg.DataDir, "pg_wal", name))
		if err != nil {
			t.Fatal(err)
		}
		if got := archivedWAL(t, st, name); !bytes.Equal(got, orig) {
			t.Errorf("archived %s differs from the original (%d bytes, want %d)", name, len(got), len(orig))
		}
	}
}

// A second cluster archiving into the same archive is refused: its archiver
// fails, and the archive holds only the first cluster's WAL.
func TestPushRefusesSecondCluster(t *testing.T) {
	bin := pgtest.Walship(t)
	arch := pgtest.TempDir(t)
	a := pgtest.New(t, pgtest.Options{InitdbArgs: []string{"--wal-segsize=1"}, Conf: pushConf(bin, arch)})
	seg := a.SwitchWAL(t)
	a.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", seg, 60*time.Second)
	st := openLocal(t, arch)
	before := archivedSegments(t, st)

	b := pgtest.New(t, pgtest.Options{InitdbArgs: []string{"--wal-segsize=1"}, Conf: pushConf(bin, arch)})
	b.Exec(t, "CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g")
	b.SwitchWAL(t)
	deadline := time.Now().Add(60 * time.Second)
	for b.QueryValue(t, "SELECT failed_count FROM pg_stat_archiver") == "0" {
		if time.Now().After(deadline) {
			t.Fatalf("the second cluster's archiver never failed\n%s", b.LogTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := b.QueryValue(t, "SELECT coalesce(last_archived_wal, '')"+" FROM pg_stat_archiver"); got != "" {
		t.Errorf("the second cluster archived %s into another cluster's archive", got)
	}
	after := archivedSegments(t, st)
	if strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("archive changed from %v to %v", before, after)
	}
	if !strings.Contains(b.LogTail(200), "system identifier") {
		t.Errorf("the server log does not explain the refusal:\n%s", b.LogTail(40))
	}
}

// A backlog left by an unwritable archive drains with --look-ahead: the
// pushes ship segments ahead of the archiver, the archiver's calls for
// those answer from the mark the look-ahead left on them, every segment is
// archived byte for byte, and the archiver never fails.
func TestPushLookAheadDrainsBacklog(t *testing.T) {
	bin := pgtest.Walship(t)
	arch := pgtest.TempDir(t)
	conf := pushConf(bin, arch)
	for i, l := range conf {
		if strings.HasPrefix(l, "archive_command") {
			conf[i] = "archive_command = 'false'" // the archive is down
		}
	}
	pg := pgtest.New(t, pgtest.Options{InitdbArgs: []string{"--wal-segsize=1"}, Conf: conf})
	pgtest.NeedUserXattrs(t, pgtest.TempDir(t)) // beside the data directory
	pg.Exec(t, "CREATE TABLE t (id int, payload text)")
	var last string
	for i := 0; i < 12; i++ {
		pg.Exec(t, "INSERT INTO t SELECT g, md5(random()::text) FROM generate_series(1, 2000) g")
		last = pg.SwitchWAL(t)
	}
	pg.Exec(t, fmt.Sprintf("ALTER SYSTEM SET archive_command = '%s push --look-ahead 4 --jobs 2 --archive %s %%p %%f'", bin, arch))
	pg.Exec(t, "SELECT pg_reload_conf()")
	pg.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", last, 60*time.Second)

	st := openLocal(t, arch)
	names := archivedSegments(t, st)
	if len(names) < 12 {
		t.Fatalf("archive holds %d segments, want at least 12", len(names))
	}
	sameAsPGWAL(t, st, pg, names)
	log := pg.LogTail(400)
	if !strings.Contains(log, "shipped ahead by an earlier push") {
		t.Errorf("no archiver call answered from a look-ahead's mark:\n%s", log)
	}
	// The archiver's failures are those of 'false' only: once walship
	// pushes, none (a call that failed would be retried and logged).
	if strings.Contains(log, "level=ERROR") {
		t.Errorf("walship logged an error during the drain:\n%s", log)
	}
}
