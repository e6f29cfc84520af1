package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/backup"
	"github.com/walship/walship/internal/pgtest"
	"github.com/walship/walship/wal"
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
	StartWAL string `json:"start_wal"`
	StopWAL  string `json:"stop_wal"`
}

// segmentBefore returns the name of the segment before name.
func segmentBefore(t *testing.T, name string) string {
	t.Helper()
	n, err := wal.ParseName(name)
	if err != nil {
		t.Fatal(err)
	}
	seg, err := n.SegNo(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	return wal.SegmentName(n.TLI, seg-1, 1<<20)
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
	s.primary.WaitArchived(t, seg, time.Minute)
}

// restore restores the archive's backup into a new cluster with the
// restore arguments args, and starts it. The restored server does not
// archive: it would put a new timeline into the archive the next restore
// reads.
func (s *backupSetup) restore(t *testing.T, args ...string) *pgtest.Cluster {
	t.Helper()
	c := s.restoreStopped(t, args...)
	c.Start(t)
	return c
}

// restoreStopped is restore without starting the cluster.
func (s *backupSetup) restoreStopped(t *testing.T, args ...string) *pgtest.Cluster {
	t.Helper()
	return pgtest.Adopt(t, pgtest.Options{Conf: []string{"archive_mode = off"}}, func(dir string) {
		s.walship(t, append([]string{"restore", "--archive", s.arch, "--pgdata", dir}, args...)...)
	})
}

// restoreRows restores the archive's backup with the restore arguments
// args, waits until recovery has ended and checks that the restored cluster
// holds exactly the rows want.
func (s *backupSetup) restoreRows(t *testing.T, want string, args ...string) *pgtest.Cluster {
	t.Helper()
	c := s.restore(t, args...)
	c.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
	if got := rows(t, c); got != want {
		t.Errorf("restored with %q: rows %q, want %q", args, got, want)
	}
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
		{"time, ISO 8601 with Z", []string{"--target-time", isoZ(t, times[2])}, "0,1,2,3"},
		{"xid", []string{"--target-xid", xids[2]}, "0,1,2,3"},
		{"lsn", []string{"--target-lsn", lsns[3]}, "0,1,2,3,4"},
		{"name", []string{"--target-name", "after_1"}, "0,1"},
		{"all", nil, "0,1,2,3,4,5"},
		{"prefetch", []string{"--prefetch", "3"}, "0,1,2,3,4,5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if len(args) > 0 && strings.HasPrefix(args[0], "--target-") {
				args = append(args, "--target-action", "promote")
			}
			c := s.restoreRows(t, tc.want, args...)
			if tc.name == "prefetch" {
				if _, err := os.Stat(c.DataDir + "/pg_wal/walship-spool"); err != nil {
					t.Errorf("no prefetch spool: %v", err)
				}
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

// isoZ rewrites a time as clock_timestamp() prints it into ISO 8601 in UTC
// with a Z, the form PostgreSQL 15's recovery_target_time refuses.
func isoZ(t *testing.T, s string) string {
	t.Helper()
	tm, err := backup.ParseTime(s)
	if err != nil {
		t.Fatal(err)
	}
	return tm.UTC().Format(time.RFC3339Nano)
}

// A backup is corrupt when a byte of a stored file changes: restore must
// refuse it, and leave no usable data directory behind.
func TestBackupCorruptRestore(t *testing.T) {
	// s2 is for push's segments: a backup asked for it stores zstd.
	for _, compress := range []string{"zstd", "none", "s2"} {
		t.Run(compress, func(t *testing.T) {
			s := newBackupSetup(t)
			s.primary.Exec(t, "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g")
			m := s.backup(t, s.primary, "--compress", compress)
			name := s.arch + "/backups/" + m.ID + "/base.tar"
			if compress != "none" {
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
	s.restoreRows(t, "1,2")
}

// verify passes on a healthy archive and names a missing segment; expire
// keeps the newest backup and the WAL it needs.
func TestBackupVerifyExpire(t *testing.T) {
	s := newBackupSetup(t)
	p := s.primary
	p.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	first := s.backup(t, p)
	for i := 1; i <= 3; i++ {
		p.Exec(t, fmt.Sprintf("INSERT INTO t VALUES (%d)", i))
		s.archiveAll(t)
	}
	second := s.backup(t, p)
	p.Exec(t, "INSERT INTO t VALUES (4)")
	s.archiveAll(t)

	out := s.walship(t, "verify", "--archive", s.arch)
	if !strings.Contains(out, " 0 problems") {
		t.Errorf("verify of a healthy archive:\n%s", out)
	}

	// A segment between the two backups goes missing: only the first
	// backup's chain breaks.
	gap := segmentBefore(t, second.StartWAL)
	gone := s.arch + "/wal/" + gap + ".zst"
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	out, err := s.walshipErr("verify", "--archive", s.arch)
	if err == nil || !strings.Contains(out, gap) || !strings.Contains(out, first.ID) ||
		strings.Contains(out, "backup "+second.ID) {
		t.Errorf("verify with %s missing: %v, want exit 1 naming the segment and backup %s only:\n%s", gone, err, first.ID, out)
	}
	info := s.walship(t, "info", "--archive", s.arch)
	t.Logf("verify:\n%s\ninfo:\n%s", out, info)
	if !strings.Contains(info, "  "+gap+"\n") {
		t.Errorf("info does not show the gap at %s:\n%s", gap, info)
	}

	out = s.walship(t, "expire", "--archive", s.arch, "--keep", "1")
	if !strings.Contains(out, "removed 1 backups") {
		t.Errorf("expire --keep 1: %s", out)
	}
	out = s.walship(t, "verify", "--archive", s.arch)
	if !strings.Contains(out, " 0 problems") {
		t.Errorf("verify after expire:\n%s", out)
	}
	s.restoreRows(t, "1,2,3,4")
}

// streamingStandby makes a streaming standby of the setup's primary, with
// the same archive settings (it archives once promoted), and starts it.
func (s *backupSetup) streamingStandby(t *testing.T) *pgtest.Cluster {
	t.Helper()
	c := pgtest.BaseBackup(t, s.primary, pgtest.Options{Conf: []string{
		"primary_conninfo = '" + s.primary.ConnString() + "'",
	}})
	c.WriteFile(t, "standby.signal", "")
	c.Start(t)
	return c
}

// A backup taken from a standby restores and runs. Nothing switches WAL on
// a standby: walship backup waits until the primary archives the segment
// holding the stop position.
func TestBackupFromStandby(t *testing.T) {
	s := newBackupSetup(t)
	p := s.primary
	p.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	p.Exec(t, "INSERT INTO t VALUES (1)")
	sb := s.streamingStandby(t)
	lsn := p.QueryValue(t, "SELECT pg_current_wal_lsn()")
	sb.WaitFor(t, "SELECT pg_last_wal_replay_lsn() >= '"+lsn+"'", "t", time.Minute)

	// Without --from-standby a standby is skipped, cleanly.
	skip, err := exec.Command(s.bin, "backup", "--archive", s.arch, "--dsn", sb.ConnString()).CombinedOutput()
	if err != nil || !strings.Contains(string(skip), "no backup: the server is a standby") {
		t.Fatalf("backup of a standby without --from-standby: %v, %s; want exit 0 and no backup", err, skip)
	}
	if ids := backupIDs(t, s.arch); len(ids) != 0 {
		t.Fatalf("backup without --from-standby stored %v", ids)
	}

	cmd := exec.Command(s.bin, "backup", "--archive", s.arch, "--dsn", sb.ConnString(), "--from-standby", "--json", "--wal-timeout", "2m")
	var out, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The primary switches WAL now and then, as archive_timeout would.
	for waiting := true; waiting; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("walship backup from the standby: %v\n%s", err, stderr.String())
			}
			waiting = false
		case <-time.After(300 * time.Millisecond):
			p.Exec(t, "SELECT pg_switch_wal()")
		}
	}
	var m struct {
		FromStandby bool   `json:"from_standby"`
		StopLSN     string `json:"stop_lsn"`
	}
	if err := json.Unmarshal([]byte(out.String()), &m); err != nil || !m.FromStandby {
		t.Errorf("backup.json from the standby: %s (%v); want from_standby true", out.String(), err)
	}
	p.Exec(t, "INSERT INTO t VALUES (2)")
	s.archiveAll(t)

	s.restoreRows(t, "1,2")
}

// A restore follows the archive across a timeline switch: a backup of
// timeline 1 recovers to the newest timeline, which a promoted standby
// started, and verify checks the chain across the switch.
func TestBackupAcrossTimelines(t *testing.T) {
	s := newBackupSetup(t)
	p := s.primary
	p.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	p.Exec(t, "INSERT INTO t VALUES (1)")
	s.backup(t, p)
	sb := s.streamingStandby(t)
	p.Exec(t, "INSERT INTO t VALUES (2)")
	lsn := p.QueryValue(t, "SELECT pg_current_wal_lsn()")
	sb.WaitFor(t, "SELECT pg_last_wal_replay_lsn() >= '"+lsn+"'", "t", time.Minute)
	s.archiveAll(t)
	p.Stop(t)

	// The standby becomes the new primary on timeline 2, archiving into the
	// same archive.
	sb.Exec(t, "SELECT pg_promote()")
	sb.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
	sb.Exec(t, "INSERT INTO t VALUES (3)")
	seg := sb.SwitchWAL(t)
	sb.WaitArchived(t, seg, time.Minute)
	if !strings.HasPrefix(seg, "00000002") {
		t.Fatalf("the promoted standby archived %s, want timeline 2", seg)
	}

	c := s.restoreRows(t, "1,2,3")
	if seg := c.QueryValue(t, "SELECT pg_walfile_name(pg_current_wal_lsn())"); seg < "00000003" {
		t.Errorf("restored cluster writes %s, want a timeline after 2", seg)
	}
	out := s.walship(t, "verify", "--archive", s.arch)
	if !strings.Contains(out, " 0 problems") {
		t.Errorf("verify across timelines:\n%s", out)
	}
}

// restore --standby builds a pg_standby-mode standby: it follows the
// archive with walship wait until the trigger file appears, then promotes.
func TestBackupRestoreStandby(t *testing.T) {
	s := newBackupSetup(t)
	p := s.primary
	p.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	p.Exec(t, "INSERT INTO t VALUES (1)")
	s.backup(t, p, "--compress-on", "client") // the other tests let the server compress
	trig := pgtest.TempDir(t) + "/walship.trigger"
	c := s.restoreStopped(t, "--standby", "--trigger", trig)
	// The standby is consistent only once it has read past the backup's
	// last segment, which the primary has still to fill.
	c.StartNoWait(t)
	p.Exec(t, "INSERT INTO t VALUES (2)")
	s.archiveAll(t)
	c.WaitFor(t, "SELECT count(*) FROM t", "2", time.Minute)
	if got := c.QueryValue(t, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("the standby is not in recovery")
	}
	p.Exec(t, "INSERT INTO t VALUES (3)")
	s.archiveAll(t)
	c.WaitFor(t, "SELECT count(*) FROM t", "3", time.Minute)

	s.walship(t, "promote", "--trigger", trig)
	c.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
	if got := rows(t, c); got != "1,2,3" {
		t.Errorf("promoted standby rows %q, want 1,2,3", got)
	}
	if _, err := os.Stat(trig); !os.IsNotExist(err) {
		t.Errorf("recovery_end_command left the trigger file: %v", err)
	}
}

// backupIDs lists the names under backups/ of the archive in dir.
func backupIDs(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "backups"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.Name())
	}
	return ids
}

// walship cleanup as a standby's archive_cleanup_command removes the WAL
// older than the standby's restart point, but not the WAL the archive's
// backup needs: point-in-time recovery from it still works afterwards.
func TestCleanupKeepsBackupWAL(t *testing.T) {
	s := newBackupSetup(t)
	p := s.primary
	p.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	for i := 1; i <= 3; i++ {
		p.Exec(t, fmt.Sprintf("INSERT INTO t VALUES (%d)", i))
		s.archiveAll(t)
	}
	b := s.backup(t, p)

	standby := s.restoreStopped(t)
	// walship restore turns archive_cleanup_command off in
	// postgresql.auto.conf, which postgresql.conf cannot override.
	auto, err := os.OpenFile(filepath.Join(standby.DataDir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(auto, "archive_cleanup_command = '%s cleanup --archive %s %%r'\n", s.bin, s.arch)
	if err := auto.Close(); err != nil {
		t.Fatal(err)
	}
	standby.WriteFile(t, "standby.signal", "")
	standby.Start(t)
	for i := 4; i <= 6; i++ {
		p.Exec(t, fmt.Sprintf("INSERT INTO t VALUES (%d)", i))
		p.Exec(t, "CHECKPOINT") // a restart point for the standby
		s.archiveAll(t)
	}
	standby.WaitFor(t, "SELECT count(*) FROM t", "6", time.Minute)
	// The restart point runs archive_cleanup_command before CHECKPOINT
	// returns.
	standby.Exec(t, "CHECKPOINT")

	segs := archivedSegments(t, openLocal(t, s.arch))
	var older, kept int
	for _, seg := range segs {
		if seg < b.StartWAL {
			older++
		} else {
			kept++
		}
	}
	if older != 0 {
		t.Errorf("after cleanup the archive still holds %d segments older than the backup's %s: %v", older, b.StartWAL, segs)
	}
	if kept < 4 {
		t.Errorf("after cleanup the archive holds %d segments from the backup's %s on, want every one since: %v", kept, b.StartWAL, segs)
	}
	if out := s.walship(t, "verify", "--archive", s.arch); !strings.Contains(out, " 0 problems") {
		t.Errorf("verify after cleanup:\n%s", out)
	}
	s.restoreRows(t, "1,2,3,4,5,6")
}

// restore --signal standby leaves standby.signal and no recovery.signal: the
// standby, promoted with pg_promote(), stays on its new timeline across a
// plain restart (a recovery.signal left behind sent it into archive
// recovery and onto yet another timeline).
func TestRestoreSignalStandby(t *testing.T) {
	s := newBackupSetup(t)
	s.primary.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	s.primary.Exec(t, "INSERT INTO t SELECT generate_series(1, 10)")
	s.backup(t, s.primary)
	s.primary.Exec(t, "INSERT INTO t SELECT generate_series(11, 20)")
	s.archiveAll(t)
	c := s.restoreStopped(t, "--signal", "standby")
	for f, want := range map[string]bool{"standby.signal": true, "recovery.signal": false} {
		if _, err := os.Stat(filepath.Join(c.DataDir, f)); (err == nil) != want {
			t.Errorf("%s there: %v, want %v", f, err == nil, want)
		}
	}
	c.Start(t)
	c.WaitFor(t, "SELECT count(*) FROM t", "20", time.Minute)
	if got := c.QueryValue(t, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("restored with --signal standby: pg_is_in_recovery = %s, want a standby", got)
	}
	c.Exec(t, "SELECT pg_promote()")
	c.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
	c.Exec(t, "CHECKPOINT")
	tli := c.QueryValue(t, "SELECT timeline_id FROM pg_control_checkpoint()")
	c.Restart(t)
	if got := c.QueryValue(t, "SELECT pg_is_in_recovery()"); got != "f" {
		t.Errorf("after a restart the promoted standby is in recovery again")
	}
	if got := c.QueryValue(t, "SELECT timeline_id FROM pg_control_checkpoint()"); got != tli {
		t.Errorf("a plain restart moved the promoted standby from timeline %s to %s", tli, got)
	}
}

// After a fork (a point-in-time recovery promoted onto timeline 2, archiving
// into the same archive) the old primary, still on timeline 1, took a newer
// backup. A restore to the latest timeline must pick the older backup, whose
// WAL lies on timeline 2's history: the newer one made the server refuse to
// start ("requested timeline 2 is not a child of this server's history").
func TestRestoreAfterFork(t *testing.T) {
	s := newBackupSetup(t)
	p := s.primary
	p.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	p.Exec(t, "INSERT INTO t SELECT generate_series(1, 10)")
	older := s.backup(t, p)
	p.Exec(t, "INSERT INTO t SELECT generate_series(11, 20)")
	p.Exec(t, "SELECT pg_create_restore_point('fork')")
	s.archiveAll(t)

	// The fork: restored to 'fork', promoted, archiving timeline 2 into
	// the same archive (the backup's archive_command).
	fork := pgtest.Adopt(t, pgtest.Options{}, func(dir string) {
		s.walship(t, "restore", "--archive", s.arch, "--pgdata", dir, "--target-name", "fork", "--target-action", "promote")
	})
	fork.Start(t)
	fork.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
	fork.Exec(t, "INSERT INTO t SELECT generate_series(100, 110)")
	seg := fork.SwitchWAL(t)
	fork.WaitArchived(t, seg, time.Minute)
	fork.Stop(t)

	// The old primary goes on on timeline 1 and takes a newer backup.
	p.Exec(t, "INSERT INTO t SELECT generate_series(21, 30)")
	newer := s.backup(t, p)
	s.archiveAll(t)
	if newer.ID == older.ID {
		t.Fatal("no newer backup")
	}

	var want []string
	for i := 1; i <= 20; i++ {
		want = append(want, strconv.Itoa(i))
	}
	for i := 100; i <= 110; i++ {
		want = append(want, strconv.Itoa(i))
	}
	c := s.restoreRows(t, strings.Join(want, ","))
	if got := c.QueryValue(t, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"); got != "00000003" {
		t.Errorf("restored onto timeline %s, want 00000003 (after 2)", got)
	}
	// info says which backup recovers onto which timeline.
	out, err := s.walshipErr("info", "--archive", s.arch, "--json")
	var info struct {
		RecoversOnto map[string][]int `json:"recovers_onto"`
	}
	if err != nil || json.Unmarshal([]byte(out), &info) != nil {
		t.Fatalf("walship info --json: %v\n%s", err, out)
	}
	if got, want := fmt.Sprint(info.RecoversOnto[older.ID]), "[1 2]"; got != want {
		t.Errorf("older backup recovers onto %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(info.RecoversOnto[newer.ID]), "[1]"; got != want {
		t.Errorf("newer backup recovers onto %s, want %s", got, want)
	}
	// verify reports the WAL timeline 1 got after timeline 2 left it, and
	// the newer backup, which a restore to the latest timeline passes over.
	vout, err := exec.Command(s.bin, "verify", "--archive", s.arch, "--json").Output()
	out = string(vout)
	var ver struct {
		Problems []struct{ File, Problem string } `json:"problems"`
	}
	if err == nil || json.Unmarshal([]byte(out), &ver) != nil {
		t.Fatalf("walship verify --json after the fork: %v, want problems\n%s", err, out)
	}
	var diverged, passedOver bool
	for _, p := range ver.Problems {
		diverged = diverged || strings.HasPrefix(p.Problem, "diverged: ") && strings.Contains(p.Problem, "timeline 1 ")
		passedOver = passedOver || strings.Contains(p.File, newer.ID) && strings.Contains(p.Problem, "cannot recover onto the latest timeline")
		if strings.Contains(p.File, older.ID) {
			t.Errorf("verify flags the older backup, which recovers onto every timeline: %+v", p)
		}
	}
	if !diverged || !passedOver {
		t.Errorf("verify problems %+v: want timeline 1 diverged (%v) and backup %s passed over (%v)", ver.Problems, diverged, newer.ID, passedOver)
	}
	// Restoring the newer backup by name onto timeline 2 is refused,
	// saying why, before anything is written.
	dir := filepath.Join(pgtest.TempDir(t), "data")
	out, err = s.walshipErr("restore", "--archive", s.arch, "--pgdata", dir, "--backup", newer.ID)
	if err == nil || !strings.Contains(out, "cannot recover onto timeline 2") {
		t.Errorf("restore of the newer timeline-1 backup onto timeline 2: %v\n%s", err, out)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("the refused restore wrote %s", dir)
	}
}
