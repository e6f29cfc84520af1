package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walship/walship/internal/pgtest"
)

// tailInterval is the --interval of the tail daemon in these tests.
const tailInterval = 200 * time.Millisecond

// ack is one commit the primary acknowledged.
type ack struct {
	id int
	at time.Time
}

// TestTailFailoverLosesAtMostOneInterval is the promise of walship tail: a
// primary killed under a steady write load, a pg_standby-mode standby
// promoted with a smart trigger, and every commit acknowledged more than one
// interval (plus slack for the poll and the Put) before the kill is there.
func TestTailFailoverLosesAtMostOneInterval(t *testing.T) {
	t.Parallel()
	tailFailover(t, nil)
}

// tailFailover is TestTailFailoverLosesAtMostOneInterval, on an encrypted
// archive when enc is not nil.
func tailFailover(t *testing.T, enc *encryptedArchive) {
	bin := pgtest.Walship(t)
	arch := pgtest.TempDir(t)
	trig := filepath.Join(pgtest.TempDir(t), "walship.trigger")
	readArgs := ""
	if enc != nil {
		enc.init(t, bin, arch)
		readArgs = " " + enc.readArgs()
	}
	primary := pgtest.New(t, pgtest.Options{
		InitdbArgs: []string{"--wal-segsize=1"},
		Conf: []string{
			"archive_mode = on",
			"archive_command = '" + bin + " push --archive " + arch + " %p %f'",
		},
	})
	primary.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, pad text)")
	seg := primary.SwitchWAL(t)
	primary.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", seg, 30*time.Second)

	standby := pgtest.BaseBackup(t, primary, pgtest.Options{Conf: []string{
		"restore_command = '" + bin + " wait --archive " + arch + readArgs + " --trigger " + trig + " --poll 100ms %f %p %r'",
		"recovery_end_command = 'rm -f " + trig + "'",
		"hot_standby = on",
		// Read-ahead would block in the waiting restore_command and keep the
		// standby from a consistent state until the next segment comes.
		"recovery_prefetch = off",
	}})
	standby.WriteFile(t, "recovery.signal", "")
	// The backup ends in a segment the primary has not archived yet.
	primary.SwitchWAL(t)
	standby.StartNoWait(t)
	standby.WaitFor(t, "SELECT pg_is_in_recovery()", "t", 60*time.Second)

	tail, tailLog := startTail(t, bin, primary, arch)

	acks := make(chan []ack, 1)
	go func() { acks <- writeLoad(primary.ConnString()) }()
	time.Sleep(3 * time.Second)
	// Kill well inside a segment, so that the last one is not archived
	// whole and the tail has had several intervals to ship its beginning.
	deadline := time.Now().Add(30 * time.Second)
	for {
		off, _ := strconv.Atoi(primary.QueryValue(t, "SELECT file_offset FROM pg_walfile_name_offset(pg_current_wal_flush_lsn())"))
		if off >= 256<<10 && off <= 768<<10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flush position stayed out of [256 KiB, 768 KiB] of its segment for 30 s (last offset %d)", off)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The primary's host dies: the server and the tail daemon at once.
	killed := time.Now()
	if err := tail.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	primary.Kill(t)
	acked := <-acks
	if len(acked) < 100 {
		t.Fatalf("only %d commits acknowledged in 3 s: the load did not run", len(acked))
	}

	out, err := standby.Command(t, bin, "promote", "--trigger", trig).CombinedOutput()
	if err != nil {
		t.Fatalf("walship promote: %v\n%s", err, out)
	}
	standby.WaitFor(t, "SELECT pg_is_in_recovery()", "f", 60*time.Second)

	present := standby.QueryInts(t, "SELECT id FROM t")
	lost, mustHave, lostSpan := 0, 0, time.Duration(0)
	for _, a := range acked {
		required := a.at.Before(killed.Add(-tailInterval - 300*time.Millisecond))
		if required {
			mustHave++
		}
		if present[a.id] {
			continue
		}
		lost++
		lostSpan = max(lostSpan, killed.Sub(a.at))
		if required {
			t.Errorf("row %d, acknowledged %v before the kill, is missing after the failover", a.id, killed.Sub(a.at))
		}
	}
	t.Logf("%d commits acknowledged, %d of them more than %v before the kill; %d acknowledged commits lost, the oldest %v before the kill",
		len(acked), mustHave, tailInterval+300*time.Millisecond, lost, lostSpan.Round(time.Millisecond))
	if log := standby.LogTail(2000); !strings.Contains(log, "restored the tail of the segment") {
		t.Errorf("the standby did not restore a tail; its log:\n%s", log)
	}
	// push removes the increments of every segment it archives whole.
	if enc != nil {
		enc.assertAllEncrypted(t, arch)
	}
	dirs, _ := filepath.Glob(filepath.Join(arch, "wal", "*.tail"))
	for _, d := range dirs {
		seg := strings.TrimSuffix(filepath.Base(d), ".tail")
		if _, err := os.Stat(filepath.Join(arch, "wal", seg+".zst")); err == nil {
			files, _ := os.ReadDir(d)
			t.Errorf("%s is archived whole, and its tail directory is left with %d files", seg, len(files))
		}
	}
	b, _ := os.ReadFile(tailLog)
	if t.Failed() {
		t.Logf("walship tail log:\n%s", b)
	} else if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) > 0 {
		t.Logf("walship tail, last log line: %s", lines[len(lines)-1])
	}
}

// startTail starts walship tail as the cluster's user and stops it at the
// end of the test; it returns the command and the path of its log.
func startTail(t *testing.T, bin string, c *pgtest.Cluster, arch string) (*exec.Cmd, string) {
	t.Helper()
	if out, err := exec.Command(bin, "tail", "--help").CombinedOutput(); err != nil {
		t.Fatalf("%s tail --help: %v\n%s\n(is tailCommand(g) listed in newApp's Commands in cmd/walship/main.go?)", bin, err, out)
	}
	logPath := filepath.Join(t.TempDir(), "tail.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := c.Command(t, bin, "tail", "--archive", arch, "--pgdata", c.DataDir, "--dsn", c.ConnString(),
		"--interval", tailInterval.String(), "--log-every", "1s")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	wait := func() { once.Do(func() { cmd.Wait(); logFile.Close() }) }
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		wait()
	})
	return cmd, logPath
}

// writeLoad commits numbered rows one by one, with synchronous_commit on,
// until the server goes away, and returns every commit acknowledged.
func writeLoad(connString string) []ack {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return nil
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		return nil
	}
	var acked []ack
	for id := 1; ; id++ {
		if _, err := conn.Exec(ctx, "INSERT INTO t SELECT $1::int, md5($1::text) || md5(($1::int + 1)::text)", id); err != nil {
			return acked
		}
		acked = append(acked, ack{id: id, at: time.Now()})
		// A steady load of about 500 commits (100 kB of WAL) a second: a
		// 1 MiB segment lasts seconds, far longer than the tail's interval,
		// and two cores keep up with it.
		time.Sleep(2 * time.Millisecond)
	}
}
