package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/internal/pgtest"
)

// Accident 10: a warm standby set up from PostgreSQL's documentation leaves
// recovery_prefetch at its default (try). PostgreSQL 15 and later then read
// WAL ahead of replay and call restore_command for the next segment while
// records of the current one are unapplied; walship wait blocks on it, so the
// standby lags a segment, and after a base backup pg_ctl -w start timed out.
// wait must say so in the server log, with the fix, once per server start,
// and say nothing once recovery_prefetch is off.
func TestNoAccident10RecoveryPrefetch(t *testing.T) {
	bin := pgtest.Walship(t)
	arch := pgtest.TempDir(t)
	trig := filepath.Join(pgtest.TempDir(t), "walship.trigger")
	primary := pgtest.New(t, pgtest.Options{InitdbArgs: []string{"--wal-segsize=1"}, Conf: pushConf(bin, arch)})
	if m := pgtest.Major(t); !m.RecoveryPrefetch() {
		t.Skipf("%s has no recovery_prefetch", m)
	}
	primary.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, v text)")

	// contrib/postgresql/standby-wait.conf without its recovery_prefetch
	// line: what a standby set up from PostgreSQL's documentation has.
	var conf []string
	for _, l := range contribConf("standby-wait.conf", contribPaths(bin, arch, trig)) {
		if strings.HasPrefix(l, "recovery_prefetch") {
			continue
		}
		conf = append(conf, strings.Replace(l, " wait --archive", " wait --poll 100ms --archive", 1))
	}
	standby := pgtest.BaseBackup(t, primary, pgtest.Options{Conf: conf})
	standby.WriteFile(t, "recovery.signal", "")
	primary.SwitchWAL(t)
	// Not Start: with read-ahead the standby is consistent only once the
	// segment after the backup's is archived.
	standby.StartNoWait(t)

	inserted := 0
	segments := func(n int) {
		t.Helper()
		for range n {
			primary.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series($1::int, $2::int - 1) g", inserted, inserted+100)
			inserted += 100
			seg := primary.SwitchWAL(t)
			primary.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", seg, time.Minute)
		}
	}
	segments(4)
	// The last segment's rows may wait for the next one: that is the lag.
	standby.WaitFor(t, "SELECT count(*) >= "+strconv.Itoa(inserted-100)+" FROM t", "t", time.Minute)
	restored := restoredSegments(standby)
	if restored < 3 {
		t.Fatalf("the standby restored %d segments, want at least 3\n%s", restored, standby.LogTail(60))
	}
	warns := prefetchWarnings(standby)
	if len(warns) != 1 {
		t.Fatalf("after %d restored segments the server log holds %d recovery_prefetch warnings, want 1 (once per start):\n%s",
			restored, len(warns), standby.LogTail(60))
	}
	t.Logf("after %d restored segments: %s", restored, warns[0])
	if !strings.Contains(warns[0], "recovery_prefetch = off") {
		t.Errorf("the warning does not name the fix (recovery_prefetch = off):\n%s", warns[0])
	}
	if m := prefetchMarker(t, standby); !strings.HasSuffix(m, "\nwarned\n") {
		t.Errorf("marker %q, want it to record the warning", m)
	}

	// Fixed as the warning says, and restarted: the new start is checked
	// again and stays quiet.
	standby.Stop(t)
	standby.AppendConf(t, "recovery_prefetch = off")
	standby.StartNoWait(t)
	standby.WaitFor(t, "SELECT pg_is_in_recovery()", "t", time.Minute)
	segments(2)
	standby.WaitFor(t, "SELECT count(*) FROM t", strconv.Itoa(inserted), time.Minute)
	if got := restoredSegments(standby); got < restored+2 {
		t.Fatalf("after the restart the standby restored %d more segments, want at least 2", got-restored)
	}
	if warns := prefetchWarnings(standby); len(warns) != 1 {
		t.Errorf("with recovery_prefetch = off the server log holds %d recovery_prefetch warnings in all, want the first start's alone:\n%s",
			len(warns), strings.Join(warns, "\n"))
	}
	pidFile, err := os.ReadFile(filepath.Join(standby.DataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _, _ := strings.Cut(string(pidFile), "\n")
	if m := prefetchMarker(t, standby); !strings.HasPrefix(m, pid+"\n") || !strings.HasSuffix(m, "\noff\n") {
		t.Errorf("marker %q, want the new postmaster's (pid %s) with the outcome off", m, pid)
	}
}

// prefetchWarnings returns walship's warnings about recovery_prefetch in
// the server log.
func prefetchWarnings(c *pgtest.Cluster) []string {
	var warns []string
	for _, l := range strings.Split(c.LogTail(1<<20), "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "recovery_prefetch") {
			warns = append(warns, l)
		}
	}
	return warns
}

// restoredSegments counts the segments the server log says were restored.
func restoredSegments(c *pgtest.Cluster) int {
	n := 0
	for _, l := range strings.Split(c.LogTail(1<<20), "\n") {
		if strings.Contains(l, `restored log file "`) && !strings.Contains(l, ".history") {
			n++
		}
	}
	return n
}

// prefetchMarker returns what walship wait remembers of its
// recovery_prefetch check: the postmaster's pid and start time, and the
// outcome.
func prefetchMarker(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", ".walship-prefetch-checked"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
