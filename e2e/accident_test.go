package e2e

// The fault-injection cases of "Never promote, stop or serve bad WAL by
// accident", one test each, named after its number. Where PostgreSQL is
// involved the test runs it: what matters is what the server does with
// walship's answer.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/internal/pgtest"
)

// serverLog returns the whole server log of c.
func serverLog(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	b, err := os.ReadFile(c.LogFile)
	if err != nil && !os.IsNotExist(err) { // not written yet by a server just started
		t.Fatal(err)
	}
	return string(b)
}

// waitLog waits until c's server log, from byte from on, holds one of
// subs, and returns it.
func waitLog(t *testing.T, c *pgtest.Cluster, from int, timeout time.Duration, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		log := serverLog(t, c)[from:]
		for _, s := range subs {
			if strings.Contains(log, s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server log holds none of %q after %v:\n%s", subs, timeout, c.LogTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promotionLines are what a server logs when it ends archive recovery.
var promotionLines = []string{"selected new timeline ID", "archive recovery complete"}

// assertNotPromoted fails the test if c's log shows that it ended recovery.
func assertNotPromoted(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	log := serverLog(t, c)
	for _, s := range promotionLines {
		if strings.Contains(log, s) {
			t.Fatalf("the standby promoted (%q in its log):\n%s", s, c.LogTail(40))
		}
	}
}

// assertStoppedNotPromoted waits until c has stopped recovery with FATAL
// because of walship's answer, and checks that it did not promote.
func assertStoppedNotPromoted(t *testing.T, c *pgtest.Cluster, from int, why ...string) {
	t.Helper()
	got := waitLog(t, c, from, time.Minute, append(why, promotionLines...)...)
	assertNotPromoted(t, c)
	waitLog(t, c, from, time.Minute, "database system is shut down")
	t.Logf("the standby stopped on %q, without promoting", got)
}

// startMayFail starts c without waiting and without failing the test when
// the server stops at once: for a standby that must stop on walship's
// answer.
func startMayFail(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	c.Command(t, "pg_ctl", "start", "-D", c.DataDir, "-l", c.LogFile, "-W").Run()
}

// walshipPIDs returns the pids of running walship processes whose command
// line holds every one of words.
func walshipPIDs(bin string, words ...string) []int {
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || !bytes.HasPrefix(b, []byte(bin+"\x00")) {
			continue
		}
		args := strings.Split(string(b), "\x00")
		ok := true
		for _, w := range words {
			ok = ok && slices.Contains(args, w)
		}
		if ok {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitingWait returns the pid of the walship wait that the standby of p runs
// now, waiting for a segment.
func (p *warmPair) waitingWait(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if pids := walshipPIDs(p.bin, "wait", p.arch); len(pids) == 1 {
			time.Sleep(500 * time.Millisecond) // the same one, settled into its wait
			if again := walshipPIDs(p.bin, "wait", p.arch); len(again) == 1 && again[0] == pids[0] {
				return pids[0]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no single walship wait running for %s", p.arch)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// 1. A misplaced or unknown global flag on the restore_command line must
// stop recovery, not answer "not found" (exit 2), which promoted.
func TestNoAccident1MisplacedGlobalFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(string) string
	}{
		{"misplaced --archive", func(l string) string {
			// walship --archive DIR wait … instead of walship wait --archive DIR …
			arch := strings.Fields(l[strings.Index(l, "--archive "):])[1]
			return strings.Replace(l, " wait --poll 100ms --archive "+arch, " --archive "+arch+" wait --poll 100ms", 1)
		}},
		{"unknown global flag", func(l string) string { return strings.Replace(l, " wait ", " --bogus wait ", 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newWarmPairStopped(t, warmOptions{restore: tc.edit})
			startMayFail(t, p.standby)
			assertStoppedNotPromoted(t, p.standby, 0, "exit code 250")
			if _, err := os.Stat(filepath.Join(p.standby.DataDir, "pg_wal", "00000002.history")); err == nil {
				t.Error("the standby wrote 00000002.history: it picked a new timeline")
			}
		})
	}
}

// 2. SIGINT (Ctrl-C on a server run in a terminal) or SIGHUP to a waiting
// walship wait must not read as "not found": the standby stops rather than
// promotes.
func TestNoAccident2SignalsToWait(t *testing.T) {
	p := newWarmPair(t)
	p.insert(t, 0, 100)
	p.standby.WaitFor(t, "SELECT count(*) FROM t", "100", time.Minute)
	for i, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGHUP} {
		if i > 0 {
			p.standby.StartNoWait(t)
			p.standby.WaitFor(t, "SELECT pg_is_in_recovery()", "t", time.Minute)
		}
		offset := len(serverLog(t, p.standby))
		pid := p.waitingWait(t)
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatal(err)
		}
		waitLog(t, p.standby, offset, time.Minute, "database system is shut down")
		log := serverLog(t, p.standby)[offset:]
		for _, s := range promotionLines {
			if strings.Contains(log, s) {
				t.Fatalf("%v to walship wait promoted the standby:\n%s", sig, log)
			}
		}
		if !strings.Contains(log, "could not restore file") {
			t.Errorf("%v: the server did not stop on walship's answer:\n%s", sig, log)
		}
		t.Logf("%v: %s", sig, strings.TrimSpace(grepLine(log, "could not restore file")))
	}
	// What was applied is still there.
	p.standby.StartNoWait(t)
	p.standby.WaitFor(t, "SELECT count(*) FROM t", "100", time.Minute)
}

// grepLine returns the first line of s that holds sub.
func grepLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// 3. A trigger file written in place (echo … > trigger) is empty for a
// moment. Junk written that way must be ignored, and "fast" must be fast,
// not a smart failover read from the empty file.
func TestNoAccident3TriggerWrittenInPlace(t *testing.T) {
	p := newWarmPair(t)
	p.insert(t, 0, 100)
	p.standby.WaitFor(t, "SELECT count(*) FROM t", "100", time.Minute)
	for i := range 12 {
		p.waitingWait(t)
		out, err := exec.Command("sh", "-c", `echo nonsense > "$0"`, p.trigger).CombinedOutput()
		if err != nil {
			t.Fatalf("echo nonsense > trigger: %v %s", err, out)
		}
		time.Sleep(400 * time.Millisecond)
		assertNotPromoted(t, p.standby)
		if got := p.standby.QueryValue(t, "SELECT pg_is_in_recovery()"); got != "t" {
			t.Fatalf("try %d: junk written into the trigger file promoted the standby\n%s", i+1, p.standby.LogTail(20))
		}
		if err := os.Remove(p.trigger); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(serverLog(t, p.standby), "ignoring trigger file") {
		t.Errorf("junk in the trigger file was not warned about:\n%s", p.standby.LogTail(20))
	}

	// Replay paused, two segments outstanding: "fast" written in place must
	// promote without the second.
	p.standby.Exec(t, "SELECT pg_wal_replay_pause()")
	p.insert(t, 100, 200)
	p.insert(t, 200, 300)
	if out, err := exec.Command("sh", "-c", `echo fast > "$0"`, p.trigger).CombinedOutput(); err != nil {
		t.Fatalf("echo fast > trigger: %v %s", err, out)
	}
	time.Sleep(1500 * time.Millisecond) // past the settle time of an empty file
	p.standby.Exec(t, "SELECT pg_wal_replay_resume()")
	p.standby.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
	n, err := strconv.Atoi(p.standby.QueryValue(t, "SELECT count(*) FROM t"))
	if err != nil {
		t.Fatal(err)
	}
	if n >= 300 {
		t.Errorf("echo fast > trigger promoted with all %d rows: a smart failover", n)
	}
	if log := serverLog(t, p.standby); strings.Contains(log, "smart failover") {
		t.Errorf("echo fast > trigger was read as a smart failover:\n%s", grepLine(log, "smart failover"))
	}
}

// 4. An archive directory that does not exist (an NFS share not mounted) is
// an unreachable archive. fetch on a standby.signal standby answers "not
// found" after a short retry, so a streaming standby restarted meanwhile
// comes up and streams; it used to exit 250 at once, which shut it down.
// wait keeps waiting, even with a smart trigger, and catches up after.
func TestNoAccident4ArchiveDirMissing(t *testing.T) {
	t.Run("fetch, streaming standby", func(t *testing.T) {
		s := newBackupSetup(t)
		s.primary.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
		c := pgtest.BaseBackup(t, s.primary, pgtest.Options{Conf: []string{
			"primary_conninfo = '" + s.primary.ConnString() + "'",
			fmt.Sprintf("restore_command = '%s fetch --archive %s %%f %%p'", s.bin, s.arch),
			"archive_mode = off",
		}})
		c.WriteFile(t, "standby.signal", "")
		c.Start(t)
		away := s.arch + ".away"
		if err := os.Rename(s.arch, away); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Rename(away, s.arch) })
		c.Restart(t) // probes history files through restore_command
		s.primary.Exec(t, "INSERT INTO t SELECT generate_series(1, 50)")
		c.WaitFor(t, "SELECT count(*) FROM t", "50", time.Minute)
		if log := serverLog(t, c); strings.Contains(log, "exit code 250") {
			t.Errorf("fetch stopped recovery for a missing archive directory:\n%s", grepLine(log, "exit code 250"))
		}
	})
	t.Run("wait", func(t *testing.T) {
		p := newWarmPair(t)
		p.insert(t, 0, 100)
		p.standby.WaitFor(t, "SELECT count(*) FROM t", "100", time.Minute)
		away := p.arch + ".away"
		if err := os.Rename(p.arch, away); err != nil {
			t.Fatal(err)
		}
		p.promote(t)
		time.Sleep(3 * time.Second)
		assertNotPromoted(t, p.standby)
		if got := p.standby.QueryValue(t, "SELECT pg_is_in_recovery()"); got != "t" {
			t.Fatalf("the standby left recovery while the archive directory was missing\n%s", p.standby.LogTail(20))
		}
		if err := os.Rename(away, p.arch); err != nil {
			t.Fatal(err)
		}
		p.standby.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
		if got := p.standby.QueryValue(t, "SELECT count(*) FROM t"); got != "100" {
			t.Errorf("promoted with %s rows, want 100", got)
		}
	})
}

// flipRaw flips bytes in the middle of the raw archived segment name, and
// removes its checksum file when asCopied (a segment another tool copied in
// carries none).
func flipRaw(t *testing.T, arch, name string, asCopied bool) {
	t.Helper()
	path := filepath.Join(arch, "wal", name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b)/2 + 100; i < len(b)/2+116; i++ {
		b[i] ^= 0x5A
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if asCopied {
		if err := os.Remove(path + archive.ChecksumSuffix); err != nil {
			t.Fatal(err)
		}
	}
}

// 5. A raw segment with bytes flipped in the middle was served, and the
// server took the bad record for the end of WAL and promoted. Now push
// --compress none stores a checksum, segments without one have their
// records verified, and either way the standby stops instead.
func TestNoAccident5FlippedRawSegment(t *testing.T) {
	for _, asCopied := range []bool{false, true} {
		t.Run(fmt.Sprintf("copied by another tool=%v", asCopied), func(t *testing.T) {
			p := newWarmPairStopped(t, warmOptions{pushArgs: "--compress none"})
			p.primary.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 3000) g")
			seg := p.primary.SwitchWAL(t)
			p.primary.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", seg, time.Minute)
			flipRaw(t, p.arch, seg, asCopied)

			// verify reports it, fetch refuses it.
			out, err := exec.Command(p.bin, "verify", "--archive", p.arch).CombinedOutput()
			if err == nil || !strings.Contains(string(out), seg) {
				t.Errorf("walship verify: %v, output does not name %s:\n%s", err, seg, out)
			}
			dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
			cmd := exec.Command(p.bin, "fetch", "--archive", p.arch, seg, dest)
			out, _ = cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code <= 125 {
				t.Errorf("walship fetch of the damaged segment: exit %d, want > 125\n%s", code, out)
			}
			if _, err := os.Stat(dest); err == nil {
				t.Errorf("fetch wrote the damaged segment to %%p")
			}

			startMayFail(t, p.standby)
			assertStoppedNotPromoted(t, p.standby, 0, "exit code 250")
		})
	}
}

// 6. A truncated raw segment with later WAL archived is bad WAL, not an
// absent file: a point-in-time recovery through it stops with FATAL instead
// of ending there and promoting with part of the rows.
func TestNoAccident6TruncatedRawSegment(t *testing.T) {
	s := newBackupSetup(t)
	// Segments as plain cp would have left them: raw, without checksum.
	s.primary.AppendConf(t, fmt.Sprintf("archive_command = '%s push --compress none --archive %s %%p %%f'", s.bin, s.arch))
	s.primary.Restart(t)
	s.primary.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	s.backup(t, s.primary)
	var segs []string
	for i := range 4 {
		s.primary.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series($1::int, $2::int) g", i*2000+1, (i+1)*2000)
		segs = append(segs, s.primary.SwitchWAL(t))
	}
	s.archiveAll(t)
	bad := filepath.Join(s.arch, "wal", segs[1])
	if err := os.Truncate(bad, 300<<10); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(bad + archive.ChecksumSuffix); err != nil {
		t.Fatal(err)
	}

	c := s.restoreStopped(t)
	startMayFail(t, c)
	// "ready to accept read-only connections" comes first, once consistent:
	// only the end of recovery is the failure.
	got := waitLog(t, c, 0, time.Minute, "exit code 250", "archive recovery complete", "ready to accept connections")
	if got != "exit code 250" {
		t.Fatalf("restore through a truncated segment ended with %q instead of stopping:\n%s", got, c.LogTail(30))
	}
	waitLog(t, c, 0, time.Minute, "database system is shut down")
	assertNotPromoted(t, c)

	// The same for a smart failover of a waiting standby: exit > 125.
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	trig := filepath.Join(t.TempDir(), "trigger")
	if out, err := exec.Command(s.bin, "promote", "--trigger", trig).CombinedOutput(); err != nil {
		t.Fatalf("promote: %v %s", err, out)
	}
	cmd := exec.Command(s.bin, "wait", "--archive", s.arch, "--trigger", trig, segs[1], dest)
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code <= 125 {
		t.Errorf("wait with a smart trigger on a truncated segment: exit %d, want > 125\n%s", code, out)
	}
}

// 7. Another cluster's .history file was accepted into the archive, and the
// archive's standby followed the foreign timeline. push now checks the
// pushing server's pg_control for every file.
func TestNoAccident7ForeignHistory(t *testing.T) {
	p := newWarmPair(t)
	p.insert(t, 0, 100)
	p.standby.WaitFor(t, "SELECT count(*) FROM t", "100", time.Minute)

	// Another cluster, archiving into the same archive by mistake, promoted
	// to timeline 2.
	other := pgtest.New(t, pgtest.Options{InitdbArgs: []string{"--wal-segsize=1"}, Conf: pushConf(p.bin, p.arch)})
	other.Stop(t)
	other.AppendConf(t, "restore_command = 'false'")
	other.WriteFile(t, "recovery.signal", "")
	other.Start(t)
	other.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
	other.SwitchWAL(t)
	other.WaitFor(t, "SELECT failed_count > 0 FROM pg_stat_archiver", "t", time.Minute)
	time.Sleep(2 * time.Second) // more retries of the history file, if any got through
	st := openLocal(t, p.arch)
	if _, _, err := archive.StatWAL(context.Background(), st, "00000002.history"); err == nil {
		t.Fatal("the other cluster's 00000002.history is in the archive")
	}
	if log := serverLog(t, other); !strings.Contains(log, "another cluster") {
		t.Errorf("the other cluster's log does not say why its files are refused:\n%s", other.LogTail(20))
	}

	// The archive's own standby still follows its primary.
	p.insert(t, 100, 200)
	p.standby.WaitFor(t, "SELECT count(*) FROM t", "200", time.Minute)
	assertNotPromoted(t, p.standby)
}

// 8. push of a FIFO hung until killed, and wait or fetch into a %p whose
// directory does not exist retried forever. Both fail at once, naming the
// problem. (The cleanup part of case 8 is TestNoAccident8CleanupKeepsRunningBackup.)
func TestNoAccident8ClearErrorsInsteadOfHangs(t *testing.T) {
	bin := pgtest.Walship(t)
	arch, dir := t.TempDir(), t.TempDir()
	fifo := filepath.Join(dir, "000000010000000000000001")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	seg := "000000010000000000000001"
	for _, tc := range []struct {
		args []string
		min  int // lowest acceptable exit code
		say  string
	}{
		{[]string{"push", "--archive", arch, fifo, seg}, 1, "not a regular file"},
		{[]string{"wait", "--archive", arch, seg, filepath.Join(dir, "no-such-dir", "RECOVERYXLOG")}, 126, "no-such-dir"},
		{[]string{"fetch", "--archive", arch, seg, filepath.Join(dir, "no-such-dir", "RECOVERYXLOG")}, 126, "no-such-dir"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, bin, tc.args...)
		out, _ := cmd.CombinedOutput()
		hung := ctx.Err() != nil
		cancel()
		if hung {
			t.Errorf("walship %s hangs", strings.Join(tc.args, " "))
			continue
		}
		if code := cmd.ProcessState.ExitCode(); code < tc.min || !strings.Contains(string(out), tc.say) {
			t.Errorf("walship %s: exit %d, output %q; want an exit code of at least %d and a message naming %q",
				strings.Join(tc.args, " "), code, out, tc.min, tc.say)
		}
	}
}

// 9. An existing pg_standby archive (segments at its root, written by cp)
// keeps working: a walship wait standby follows it, and keeps following
// when the primary moves to walship push into the same directory.
func TestNoAccident9PgStandbyArchive(t *testing.T) {
	bin, arch := pgtest.Walship(t), pgtest.TempDir(t)
	primary := pgtest.New(t, pgtest.Options{InitdbArgs: []string{"--wal-segsize=1"}, Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = 'test ! -f %s/%%f && cp %%p %s/%%f'", arch, arch),
	}})
	primary.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	trig := filepath.Join(pgtest.TempDir(t), "walship.trigger")
	sconf := contribConf("standby-wait.conf", contribPaths(bin, arch, trig))
	for i, l := range sconf {
		sconf[i] = strings.Replace(l, " wait --archive", " wait --poll 100ms --archive", 1)
		if strings.HasPrefix(l, "archive_command") {
			sconf[i] = "archive_command = 'true'"
		}
	}
	standby := pgtest.BaseBackup(t, primary, pgtest.Options{Conf: sconf})
	standby.WriteFile(t, "recovery.signal", "")
	insert := func(from, to int) {
		primary.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series($1::int, $2::int - 1) g", from, to)
		seg := primary.SwitchWAL(t)
		primary.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", seg, time.Minute)
	}
	insert(0, 1)
	standby.StartNoWait(t)
	insert(1, 1000)
	standby.WaitFor(t, "SELECT count(*) FROM t", "1000", time.Minute)
	if _, err := os.Stat(filepath.Join(arch, "wal")); err == nil {
		t.Fatal("reading a pg_standby archive wrote into it")
	}
	// info and verify read it too, with the identity of its first segment.
	if out, err := exec.Command(bin, "verify", "--archive", arch).CombinedOutput(); err != nil {
		t.Errorf("walship verify of a pg_standby archive: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "info", "--archive", arch, "--json").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"segments"`) {
		t.Errorf("walship info of a pg_standby archive: %v\n%s", err, out)
	}

	// The primary moves to walship push; the old segments stay at the root.
	primary.AppendConf(t, fmt.Sprintf("archive_command = '%s push --archive %s %%p %%f'", bin, arch))
	primary.Exec(t, "SELECT pg_reload_conf()")
	time.Sleep(time.Second)
	insert(1000, 2000)
	standby.WaitFor(t, "SELECT count(*) FROM t", "2000", time.Minute)
	if got := primary.QueryValue(t, "SELECT failed_count FROM pg_stat_archiver"); got != "0" {
		t.Errorf("walship push into the pg_standby archive failed %s times\n%s", got, primary.LogTail(20))
	}
	// Segments copied in by cp are verified too: one damaged at the root
	// stops the standby rather than ending its recovery.
	standby.Stop(t)
	primary.AppendConf(t, fmt.Sprintf("archive_command = 'test ! -f %s/%%f && cp %%p %s/%%f'", arch, arch))
	primary.Exec(t, "SELECT pg_reload_conf()")
	time.Sleep(time.Second)
	primary.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(2000, 2999) g")
	seg := primary.SwitchWAL(t)
	primary.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", seg, time.Minute)
	b, err := os.ReadFile(filepath.Join(arch, seg))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0xFF
	if err := os.WriteFile(filepath.Join(arch, seg), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "verify", "--archive", arch).CombinedOutput(); err == nil || !strings.Contains(string(out), seg) {
		t.Errorf("walship verify: %v, output does not name the damaged %s:\n%s", err, seg, out)
	}
	from := len(serverLog(t, standby))
	startMayFail(t, standby)
	assertStoppedNotPromoted(t, standby, from, "exit code 250")
}
