// Package tail measures what walship tail buys: the commits a failover
// loses (RPO) with whole-segment shipping alone and with the tail daemon at
// several intervals, and what the daemon costs in CPU and archive bytes.
//
// It is a benchmark, not a test: it runs only with WALSHIP_BENCH_TAIL=1,
//
//	WALSHIP_BENCH_TAIL=1 go test -count=1 -timeout 60m -v -run TestTailRPO ./bench/tail
//
// or bench/tail/run.sh. Settings (environment): ROUNDS (3), LOAD (20s of
// steady load before the kill), RATE (500 commits a second at most), MODES
// ("none 1s 200ms 50ms"), ARCHIVE_TIMEOUT (60s).
package tail

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walship/walship/internal/pgtest"
)

type result struct {
	mode        string
	acked       int
	lost        int
	span        time.Duration // from the oldest lost acknowledgement to the kill
	cpu         float64       // daemon CPU seconds per second of load
	walRate     float64       // WAL bytes a second
	storedRate  float64       // bytes a second stored as tail increments
	incRate     float64       // increments a second
	commitRate  float64       // acknowledged commits a second
	loadSeconds float64
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func TestTailRPO(t *testing.T) {
	if os.Getenv("WALSHIP_BENCH_TAIL") != "1" {
		t.Skip("a benchmark: set WALSHIP_BENCH_TAIL=1 (bench/tail/run.sh does)")
	}
	rounds, _ := strconv.Atoi(env("ROUNDS", "3"))
	load, err := time.ParseDuration(env("LOAD", "20s"))
	if err != nil {
		t.Fatal(err)
	}
	rate, _ := strconv.Atoi(env("RATE", "500"))
	modes := strings.Fields(env("MODES", "none 1s 200ms 50ms"))
	archiveTimeout := env("ARCHIVE_TIMEOUT", "60s")
	bin := pgtest.Walship(t)

	results := map[string][]result{}
	for r := 0; r < rounds; r++ {
		for _, mode := range modes { // interleaved: A B C D A B C D …
			res := runOnce(t, bin, mode, load, rate, archiveTimeout)
			t.Logf("round %d %-5s: %d acked, %d lost over %v; tail CPU %.2f%%, WAL %.0f kB/s, stored %.0f kB/s, %.1f increments/s",
				r+1, mode, res.acked, res.lost, res.span.Round(time.Millisecond), 100*res.cpu,
				res.walRate/1e3, res.storedRate/1e3, res.incRate)
			results[mode] = append(results[mode], res)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\nwalship tail RPO: %d rounds, %v of steady load at %d commits/s (rows of 64 random hex chars), 16 MiB segments, archive_timeout %s, PostgreSQL %s\n",
		rounds, load, rate, archiveTimeout, pgVersion(t))
	fmt.Fprintf(&b, "%-8s %10s %22s %26s %12s %12s %14s %14s\n", "mode", "commits/s", "lost commits med (max)",
		"lost span ms med (max)", "tail CPU %", "WAL kB/s", "stored kB/s", "increments/s")
	for _, mode := range modes {
		rs := results[mode]
		lost := med(rs, func(r result) float64 { return float64(r.lost) })
		span := med(rs, func(r result) float64 { return float64(r.span.Milliseconds()) })
		fmt.Fprintf(&b, "%-8s %10.0f %14.0f (%5.0f) %18.0f (%5.0f) %12.2f %12.0f %14.0f %14.1f\n", mode,
			med(rs, func(r result) float64 { return r.commitRate })[0], lost[0], lost[1], span[0], span[1],
			100*med(rs, func(r result) float64 { return r.cpu })[0],
			med(rs, func(r result) float64 { return r.walRate })[0]/1e3,
			med(rs, func(r result) float64 { return r.storedRate })[0]/1e3,
			med(rs, func(r result) float64 { return r.incRate })[0])
	}
	t.Log(b.String())
	if out := os.Getenv("BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// med returns the median and the maximum of f over rs.
func med(rs []result, f func(result) float64) [2]float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return [2]float64{}
	}
	return [2]float64{v[len(v)/2], v[len(v)-1]}
}

// runOnce builds a primary and a pg_standby-mode standby, runs the load
// (and walship tail unless mode is "none"), kills the primary and the tail
// at once, promotes the standby with a smart trigger and counts the
// acknowledged commits it lacks.
func runOnce(t *testing.T, bin, mode string, load time.Duration, rate int, archiveTimeout string) result {
	var res result
	t.Run(mode, func(t *testing.T) {
		arch := pgtest.TempDir(t)
		trig := filepath.Join(pgtest.TempDir(t), "walship.trigger")
		primary := pgtest.New(t, pgtest.Options{Conf: []string{
			"fsync = on", // commits as a production server makes them
			"archive_mode = on",
			"archive_command = '" + bin + " push --archive " + arch + " %p %f'",
			"archive_timeout = " + archiveTimeout,
		}})
		primary.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, pad text)")
		standby := pgtest.BaseBackup(t, primary, pgtest.Options{Conf: []string{
			"restore_command = '" + bin + " wait --archive " + arch + " --trigger " + trig + " --poll 100ms %f %p %r'",
			"recovery_end_command = 'rm -f " + trig + "'",
			"hot_standby = on",
			"recovery_prefetch = off",
			"archive_mode = off",
		}})
		standby.WriteFile(t, "recovery.signal", "")
		primary.SwitchWAL(t)
		standby.StartNoWait(t)
		standby.WaitFor(t, "SELECT pg_is_in_recovery()", "t", 120*time.Second)

		var tail *exec.Cmd
		if mode != "none" {
			tail = primary.Command(t, bin, "--log-level", "warn", "tail", "--archive", arch, "--pgdata", primary.DataDir,
				"--dsn", primary.ConnString(), "--interval", mode)
			tail.Stderr = os.Stderr
			if err := tail.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tail.Process.Signal(syscall.SIGKILL); tail.Wait() })
		}

		acks := make(chan []ack, 1)
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		loadStart := time.Now()
		go func() { acks <- writeLoad(ctx, primary.ConnString(), rate) }()
		time.Sleep(time.Second) // past connection setup
		startLSN := flushLSN(t, primary)
		startCPU := cpuSeconds(tail)
		startStored, startFiles := tailBytes(arch)
		started := time.Now()
		// The kill falls at a random point of the last stretch, so that
		// the phase of the tail's polls does not decide the result.
		time.Sleep(load - time.Second + time.Duration(rand.Int64N(int64(time.Second))))
		endLSN := flushLSN(t, primary)
		endCPU := cpuSeconds(tail)
		if tail != nil && endCPU == 0 {
			t.Fatal("walship tail is not running")
		}
		endStored, endFiles := tailBytes(arch)
		elapsed := time.Since(started).Seconds()

		killed := time.Now()
		if tail != nil {
			tail.Process.Signal(syscall.SIGKILL)
		}
		primary.Kill(t)
		acked := <-acks

		if out, err := standby.Command(t, bin, "promote", "--trigger", trig).CombinedOutput(); err != nil {
			t.Fatalf("promote: %v\n%s", err, out)
		}
		standby.WaitFor(t, "SELECT pg_is_in_recovery()", "f", 120*time.Second)
		present := standby.QueryInts(t, "SELECT id FROM t")
		res = result{mode: mode, acked: len(acked), loadSeconds: elapsed,
			commitRate: float64(len(acked)) / killed.Sub(loadStart).Seconds(),
			cpu:        (endCPU - startCPU) / elapsed,
			walRate:    float64(endLSN-startLSN) / elapsed,
			storedRate: (endStored - startStored) / elapsed,
			incRate:    float64(endFiles-startFiles) / elapsed}
		for _, a := range acked {
			if !present[a.id] {
				res.lost++
				res.span = max(res.span, killed.Sub(a.at))
			}
		}
	})
	return res
}

type ack struct {
	id int
	at time.Time
}

// writeLoad commits one row at a time at rate commits a second, until the
// server goes away.
func writeLoad(ctx context.Context, connString string, rate int) []ack {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return nil
	}
	defer conn.Close(context.Background())
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	var acked []ack
	for id := 1; ; id++ {
		if _, err := conn.Exec(ctx, "INSERT INTO t SELECT $1::int, md5(random()::text) || md5(random()::text)", id); err != nil {
			return acked
		}
		acked = append(acked, ack{id: id, at: time.Now()})
		select {
		case <-ctx.Done():
			return acked
		case <-tick.C:
		}
	}
}

func flushLSN(t *testing.T, c *pgtest.Cluster) uint64 {
	v := c.QueryValue(t, "SELECT pg_current_wal_flush_lsn() - '0/0'")
	n, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(n)
}

// cpuSeconds returns the user and system CPU time of a running command.
func cpuSeconds(cmd *exec.Cmd) float64 {
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// tailBytes returns the bytes and the number of tail increments in the
// archive.
func tailBytes(arch string) (float64, int) {
	files, _ := filepath.Glob(filepath.Join(arch, "wal", "*.tail", "*"))
	var total float64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			total += float64(fi.Size())
		}
	}
	return total, len(files)
}

func pgVersion(t *testing.T) string {
	out, err := exec.Command(filepath.Join(pgtest.BinDir(t), "postgres"), "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}
