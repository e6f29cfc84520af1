package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/internal/pgtest"
)

// The TestIncremental tests need PostgreSQL 17 or later; make test-majors
// runs them on 17 and 18. On an older server (the default suite's 15),
// TestIncrementalRefused checks the refusal and the fallback instead.

// parentOf reads the parent of backup id from its backup.json.
func parentOf(t *testing.T, arch, id string) string {
	t.Helper()
	var m struct {
		Parent string `json:"parent"`
		Format int    `json:"format"`
	}
	readJSON(t, filepath.Join(arch, "backups", id+".json"), &m)
	if (m.Parent != "") != (m.Format == 2) {
		t.Errorf("backup %s: format %d with parent %q; want format 2 exactly for an incremental backup", id, m.Format, m.Parent)
	}
	return m.Parent
}

// counts returns the row counts of t, gone (dropped after the full backup)
// and cut (truncated), -1 for a table that does not exist.
func counts(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	return c.QueryValue(t, `SELECT concat_ws(' ',
		(SELECT count(*) FROM t), (SELECT sum(v) FROM t),
		CASE WHEN to_regclass('gone') IS NULL THEN -1 ELSE (xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM gone', false, true, '')))[1]::text::int END,
		(SELECT count(*) FROM cut),
		CASE WHEN to_regclass('far') IS NULL THEN -1 ELSE (xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM far', false, true, '')))[1]::text::int END,
		(SELECT count(*) FROM pg_database WHERE datname = 'db2'))`)
}

// TestIncrementalChain takes a full backup, an incremental one on it and a
// second on the first, with writes, a dropped and a truncated table, a new
// database and a new tablespace between them, and restores each point,
// a point between the incrementals, the end of the archive, and a
// standby of the chain, checking the exact rows each time.
func TestIncrementalChain(t *testing.T) {
	if major := pgtest.Major(t); !major.IncrementalBackup() {
		t.Skipf("%s cannot take incremental backups; TestIncrementalRefused runs instead", major)
	}
	s := newBackupSetup(t, "summarize_wal = on")
	p := s.primary
	p.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, pad text)")
	p.Exec(t, "INSERT INTO t SELECT g, 1, md5(g::text) FROM generate_series(1, 20000) g")
	p.Exec(t, "CREATE TABLE gone AS SELECT g FROM generate_series(1, 500) g")
	p.Exec(t, "CREATE TABLE cut AS SELECT g FROM generate_series(1, 700) g")
	full := s.backup(t, p)
	if got := parentOf(t, s.arch, full.ID); got != "" {
		t.Fatalf("full backup has parent %q", got)
	}

	// About 5% of t updated, rows added, a table dropped, one truncated.
	p.Exec(t, "UPDATE t SET v = 2 WHERE id % 20 = 0")
	p.Exec(t, "INSERT INTO t SELECT g, 1, md5(g::text) FROM generate_series(20001, 21000) g")
	p.Exec(t, "DROP TABLE gone")
	p.Exec(t, "TRUNCATE cut")
	incr1 := s.backup(t, p, "--incremental")
	if got := parentOf(t, s.arch, incr1.ID); got != full.ID {
		t.Fatalf("first incremental backup's parent %q, want %s", got, full.ID)
	}

	// A point between the incrementals.
	p.Exec(t, "INSERT INTO t SELECT g, 3, md5(g::text) FROM generate_series(21001, 21500) g")
	between := p.QueryValue(t, "SELECT pg_current_wal_lsn()")
	p.Exec(t, "INSERT INTO t SELECT g, 3, md5(g::text) FROM generate_series(21501, 22000) g")
	ts := pgtest.TempDir(t)
	p.Exec(t, "CREATE TABLESPACE elsewhere LOCATION '"+ts+"'")
	p.Exec(t, "CREATE TABLE far TABLESPACE elsewhere AS SELECT g FROM generate_series(1, 3000) g")
	p.Exec(t, "CREATE DATABASE db2")
	p.Exec(t, "INSERT INTO cut SELECT g FROM generate_series(1, 10) g")
	incr2 := s.backup(t, p, "--incremental")
	if got := parentOf(t, s.arch, incr2.ID); got != incr1.ID {
		t.Fatalf("second incremental backup's parent %q, want %s", got, incr1.ID)
	}
	p.Exec(t, "UPDATE t SET v = 4 WHERE id % 20 = 1")
	p.Exec(t, "DELETE FROM t WHERE id > 21900")
	s.archiveAll(t)

	const (
		atFull  = "20000 20000 500 700 -1 0"
		atIncr1 = "21000 22000 -1 0 -1 0"
		atLSN   = "21500 23500 -1 0 -1 0"
		atIncr2 = "22000 25000 -1 10 3000 1"
		atEnd   = "21900 27895 -1 10 3000 1"
	)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"full", []string{"--backup", full.ID, "--target-immediate"}, atFull},
		{"incr1", []string{"--backup", incr1.ID, "--target-immediate"}, atIncr1},
		{"between", []string{"--target-lsn", between}, atLSN},
		{"incr2", []string{"--backup", incr2.ID, "--target-immediate"}, atIncr2},
		{"end", nil, atEnd},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if len(args) > 0 {
				args = append(args, "--target-action", "promote")
			}
			if tc.want == atIncr2 || tc.want == atEnd {
				// The tablespace goes elsewhere: the primary uses its own.
				args = append(args, "--tablespace-map", ts+"="+pgtest.TempDir(t))
			}
			c := s.restore(t, args...)
			c.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
			if got := counts(t, c); got != tc.want {
				t.Errorf("restored with %q: counts %q, want %q", args, got, tc.want)
			}
		})
	}

	// A pg_standby-mode standby of the chain follows the archive.
	trig := pgtest.TempDir(t) + "/walship.trigger"
	c := s.restoreStopped(t, "--standby", "--trigger", trig, "--tablespace-map", ts+"="+pgtest.TempDir(t))
	c.StartNoWait(t)
	p.Exec(t, "INSERT INTO t SELECT g, 5, '' FROM generate_series(30001, 30010) g")
	s.archiveAll(t)
	c.WaitFor(t, "SELECT count(*) FROM t", "21910", time.Minute)
	s.walship(t, "promote", "--trigger", trig)
	c.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)

	// verify reads every backup against its manifest, and the chain.
	if out := s.walship(t, "verify", "--archive", s.arch); !strings.Contains(out, " 0 problems") {
		t.Errorf("verify of the chain:\n%s", out)
	}
	info := s.walship(t, "info", "--archive", s.arch)
	if want := full.ID + " <- " + incr1.ID + " <- " + incr2.ID; !strings.Contains(info, want) {
		t.Errorf("info does not show the chain %q:\n%s", want, info)
	}
	// expire --keep 1 keeps the newest, and everything it builds on.
	out := s.walship(t, "expire", "--archive", s.arch, "--keep", "1")
	if !strings.Contains(out, "removed 0 backups") || !strings.Contains(out, "oldest backup kept: "+full.ID) {
		t.Errorf("expire --keep 1 of a chain of 3: %s", out)
	}
	// A new full backup, then expire --keep 1 removes the whole old chain.
	newFull := s.backup(t, p)
	out = s.walship(t, "expire", "--archive", s.arch, "--keep", "1")
	if !strings.Contains(out, "removed 3 backups") || !strings.Contains(out, "oldest backup kept: "+newFull.ID) {
		t.Errorf("expire --keep 1 after a new full backup: %s", out)
	}
}

// TestIncrementalRefused: without summarize_wal, or on a server older than
// 17, --incremental fails saying what to do and stores nothing, and
// --incremental=auto takes a full backup.
func TestIncrementalRefused(t *testing.T) {
	major := pgtest.Major(t)
	s := newBackupSetup(t) // summarize_wal is off by default
	p := s.primary
	p.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	p.Exec(t, "INSERT INTO t VALUES (1)")
	want := "summarize_wal is off"
	if !major.IncrementalBackup() {
		want = "incremental backups need PostgreSQL 17 or later"
	}
	// No backup yet, then one: the refusal comes either way.
	for i := 0; i < 2; i++ {
		cmd := exec.Command(s.bin, "backup", "--archive", s.arch, "--dsn", p.ConnString(), "--incremental", "--fast-checkpoint")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("backup --incremental on %s: %v, want a failure saying %q:\n%s", major, err, want, out)
		}
		if i == 0 {
			s.backup(t, p)
		}
	}
	m := s.backup(t, p, "--incremental=auto")
	if got := parentOf(t, s.arch, m.ID); got != "" {
		t.Errorf("backup --incremental=auto on %s: parent %q, want a full backup", major, got)
	}
	p.Exec(t, "INSERT INTO t VALUES (2)")
	s.archiveAll(t)
	s.restoreRows(t, "1,2")
}

// standbyBackup runs walship backup --from-standby of sb with args, the
// primary switching WAL meanwhile as archive_timeout would, and returns
// the backup's id.
func (s *backupSetup) standbyBackup(t *testing.T, sb *pgtest.Cluster, args ...string) backupMeta {
	t.Helper()
	cmd := exec.Command(s.bin, append([]string{"backup", "--archive", s.arch, "--dsn", sb.ConnString(), "--from-standby",
		"--json", "--wal-timeout", "2m"}, args...)...)
	var out, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("walship backup --from-standby %q: %v\n%s", args, err, stderr.String())
			}
			var m backupMeta
			if err := json.Unmarshal([]byte(out.String()), &m); err != nil {
				t.Fatalf("walship backup --json printed %q: %v", out.String(), err)
			}
			return m
		case <-time.After(300 * time.Millisecond):
			s.primary.Exec(t, "SELECT pg_switch_wal()")
		}
	}
}

// An incremental backup from a standby (summarize_wal on there) on a full
// backup from it restores to the exact rows.
func TestIncrementalFromStandby(t *testing.T) {
	if major := pgtest.Major(t); !major.IncrementalBackup() {
		t.Skipf("%s cannot take incremental backups", major)
	}
	s := newBackupSetup(t, "summarize_wal = on")
	p := s.primary
	p.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	p.Exec(t, "INSERT INTO t SELECT generate_series(1, 1000)")
	sb := s.streamingStandby(t)
	sync := func() {
		lsn := p.QueryValue(t, "SELECT pg_current_wal_lsn()")
		sb.WaitFor(t, "SELECT pg_last_wal_replay_lsn() >= '"+lsn+"'", "t", time.Minute)
	}
	sync()
	full := s.standbyBackup(t, sb)
	p.Exec(t, "INSERT INTO t SELECT generate_series(1001, 1500)")
	p.Exec(t, "DELETE FROM t WHERE id <= 100")
	// A restart point past the full backup's end, for the incremental
	// one to start from (the server refuses one that starts before).
	p.Exec(t, "CHECKPOINT")
	sync()
	sb.Exec(t, "CHECKPOINT")
	incr := s.standbyBackup(t, sb, "--incremental")
	if got := parentOf(t, s.arch, incr.ID); got != full.ID {
		t.Fatalf("incremental backup from the standby: parent %q, want %s", got, full.ID)
	}
	c := s.restore(t, "--backup", incr.ID, "--target-immediate", "--target-action", "promote")
	c.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
	if got := c.QueryValue(t, "SELECT count(*) || ' ' || min(id) || ' ' || max(id) FROM t"); got != "1400 101 1500" {
		t.Errorf("restored the standby's incremental backup: %q, want 1400 101 1500", got)
	}
}

// A chain in an S3 archive (a real S3 server) restores in one pass, each
// backup streamed from the bucket, as from a directory.
func TestIncrementalS3(t *testing.T) {
	if major := pgtest.Major(t); !major.IncrementalBackup() {
		t.Skipf("%s cannot take incremental backups", major)
	}
	a := newS3Archive(t)
	bin := pgtest.Walship(t)
	s := &backupSetup{bin: bin, arch: a.url, primary: pgtest.New(t, pgtest.Options{
		InitdbArgs: []string{"--wal-segsize=1"},
		Conf:       []string{"archive_mode = on", a.pushCommand(bin), "summarize_wal = on"},
	})}
	p := s.primary
	p.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)")
	p.Exec(t, "INSERT INTO t SELECT g, 1 FROM generate_series(1, 5000) g")
	full := s.backup(t, p)
	p.Exec(t, "UPDATE t SET v = 2 WHERE id % 10 = 0")
	incr := s.backup(t, p, "--incremental")
	p.Exec(t, "INSERT INTO t SELECT g, 3 FROM generate_series(5001, 5100) g")
	incr2 := s.backup(t, p, "--incremental")
	if info := s.walship(t, "info", "--archive", a.url); !strings.Contains(info, full.ID+" <- "+incr.ID+" <- "+incr2.ID) {
		t.Errorf("info of the S3 archive does not show the chain:\n%s", info)
	}
	c := s.restore(t, "--backup", incr2.ID, "--target-immediate", "--target-action", "promote")
	c.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
	if got := c.QueryValue(t, "SELECT count(*) || ' ' || sum(v) FROM t"); got != "5100 5800" {
		t.Errorf("restored the S3 chain: %q, want 5100 5800", got)
	}
}
