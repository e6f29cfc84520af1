package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/internal/pgtest"
)

// backupSetup is a primary archiving into arch with walship push, with 1 MiB
// segments.
type backupSetup struct {
	bin, arch string
	primary   *pgtest.Cluster
}

func newBackupSetup(t *testing.T, conf ...string) *backupSetup {
	t.Helper()
	s := &backupSetup{bin: pgtest.Walship(t), arch: pgtest.TempDir(t)}
	s.primary = pgtest.New(t, pgtest.Options{
		InitdbArgs: []string{"--wal-segsize=1"},
		Conf: append([]string{
			"archive_mode = on",
			fmt.Sprintf("archive_command = '%s push --archive %s %%p %%f'", s.bin, s.arch),
		}, conf...),
	})
	return s
}

// walship runs the walship binary as root, as an operator would run it, and
// returns its stdout; a failure fails the test.
func (s *backupSetup) walship(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.walshipErr(args...)
	if err != nil {
		t.Fatalf("walship %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (s *backupSetup) walshipErr(args ...string) (string, error) {
	cmd := exec.Command(s.bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// backupMeta is the part of backup.json the tests read.
type backupMeta struct {
	ID       string `json:"id"`
	StartLSN string `json:"start_lsn"`
	StopLSN  string `json:"stop_lsn"`
	StopWAL  string `json:"stop_wal"`
}

// backup takes a backup of c with walship backup --json.
func (s *backupSetup) backup(t *testing.T, c *pgtest.Cluster, args ...string) backupMeta {
	t.Helper()
	cmd := exec.Command(s.bin, append([]string{"backup", "--archive", s.arch, "--dsn", c.ConnString(),
		"--fast-checkpoint", "--json", "--wal-timeout", "1m"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("walship backup: %v\n%s", err, stderr.String())
	}
	var m backupMeta
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("walship backup --json printed %q: %v", out, err)
	}
	return m
}

// archiveAll switches WAL on the primary and waits until the finished
// segment is archived, so that everything committed so far is.
func (s *backupSetup) archiveAll(t *testing.T) {
	t.Helper()
	seg := s.primary.SwitchWAL(t)
	s.primary.WaitFor(t, "SELECT last_archived_wal >= '"+seg+"' FROM pg_stat_archiver", "t", time.Minute)
}

// restore restores the archive's backup into a new cluster with the
// restore arguments args, and starts it. The restored server does not
// archive: it would put a new timeline into the archive the next restore
// reads.
func (s *backupSetup) restore(t *testing.T, args ...string) *pgtest.Cluster {
	t.Helper()
	c := pgtest.Adopt(t, pgtest.Options{Conf: []string{"archive_mode = off"}}, func(dir string) {
		s.walship(t, append([]string{"restore", "--archive", s.arch, "--pgdata", dir}, args...)...)
	})
	c.Start(t)
	return c
}

// rows lists the ids in table t, in order.
func rows(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	return c.QueryValue(t, "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM t")
}

// TestBackupPITR restores one backup to each kind of recovery target and
// checks that the restored cluster holds exactly the rows committed before
// the target.
func TestBackupPITR(t *testing.T) {
	s := newBackupSetup(t)
	p := s.primary
	p.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	p.Exec(t, "INSERT INTO t VALUES (0)")
	m := s.backup(t, p)

	// Commit rows 1 to 5, noting after each commit the time, the LSN, its
	// xid, and a restore point.
	var times, lsns, xids []string
	for i := 1; i <= 5; i++ {
		xids = append(xids, p.QueryValue(t, fmt.Sprintf("INSERT INTO t VALUES (%d) RETURNING txid_current()", i)))
		times = append(times, p.QueryValue(t, "SELECT clock_timestamp()"))
		lsns = append(lsns, p.QueryValue(t, "SELECT pg_current_wal_lsn()"))
		p.Exec(t, fmt.Sprintf("SELECT pg_create_restore_point('after_%d')", i))
		time.Sleep(20 * time.Millisecond) // commit times differ
	}
	s.archiveAll(t)

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"immediate", []string{"--target-immediate"}, "0"},
		{"time", []string{"--target-time", times[1]}, "0,1,2"},
		{"xid", []string{"--target-xid", xids[2]}, "0,1,2,3"},
		{"lsn", []string{"--target-lsn", lsns[3]}, "0,1,2,3,4"},
		{"name", []string{"--target-name", "after_1"}, "0,1"},
		{"all", nil, "0,1,2,3,4,5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if args != nil {
				args = append(args, "--target-action", "promote")
			}
			c := s.restore(t, args...)
			c.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
			if got := rows(t, c); got != tc.want {
				t.Errorf("restored to %v: rows %q, want %q", tc.args, got, tc.want)
			}
			if tc.name == "all" {
				// Recovery reached the end of the archive, past the backup.
				lsn := c.QueryValue(t, "SELECT pg_current_wal_lsn() > '"+m.StopLSN+"'")
				if lsn != "t" {
					t.Errorf("restored cluster did not replay past the backup's stop LSN %s", m.StopLSN)
				}
			}
		})
	}
}

// A backup is corrupt when a byte of a stored file changes: restore must
// refuse it, and leave no usable data directory behind.
func TestBackupCorruptRestore(t *testing.T) {
	for _, compress := range []string{"zstd", "none"} {
		t.Run(compress, func(t *testing.T) {
			s := newBackupSetup(t)
			s.primary.Exec(t, "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g")
			m := s.backup(t, s.primary, "--compress", compress)
			name := s.arch + "/backups/" + m.ID + "/base.tar"
			if compress == "zstd" {
				name += ".zst"
			}
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			// Past the first headers, inside some file's data.
			b[len(b)/2] ^= 0x55
			if err := os.WriteFile(name, b, 0o600); err != nil {
				t.Fatal(err)
			}
			dir := pgtest.TempDir(t) + "/data"
			out, err := s.walshipErr("restore", "--archive", s.arch, "--pgdata", dir)
			if err == nil {
				t.Fatalf("restore of a corrupt backup succeeded:\n%s", out)
			}
			if !strings.Contains(out, "corrupt") {
				t.Errorf("restore of a corrupt backup: want an error saying it is corrupt, got:\n%s", out)
			}
			if _, err := os.Stat(dir + "/recovery.signal"); err == nil {
				t.Errorf("restore of a corrupt backup wrote recovery.signal")
			}
		})
	}
}

// A backup killed midway has no backup.json: restore does not use it, and
// info lists it as incomplete.
func TestBackupInterrupted(t *testing.T) {
	s := newBackupSetup(t)
	p := s.primary
	p.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	p.Exec(t, "INSERT INTO t VALUES (1)")
	s.backup(t, p)
	// Enough data that the backup is still running when it is killed.
	p.Exec(t, "CREATE TABLE big AS SELECT g, repeat(md5(g::text), 8) AS pad FROM generate_series(1, 300000) g")
	cmd := exec.Command(s.bin, "backup", "--archive", s.arch, "--dsn", p.ConnString(), "--fast-checkpoint")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once it has started storing data.
	deadline := time.Now().Add(time.Minute)
	for {
		started, _ := filepath.Glob(s.arch + "/backups/*/.*.tmp.*")
		if len(started) > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the second backup never started storing data")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	p.Exec(t, "INSERT INTO t VALUES (2)")
	s.archiveAll(t)

	out := s.walship(t, "info", "--archive", s.arch, "--json")
	var info struct {
		Backups    []backupMeta `json:"backups"`
		Incomplete []string     `json:"incomplete"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("info --json: %v\n%s", err, out)
	}
	if len(info.Backups) != 1 || len(info.Incomplete) != 1 {
		t.Fatalf("info lists %d complete and %d incomplete backups, want 1 and 1:\n%s", len(info.Backups), len(info.Incomplete), out)
	}
	c := s.restore(t)
	c.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
	if got := rows(t, c); got != "1,2" {
		t.Errorf("restored rows %q, want 1,2", got)
	}
}
