// Command fetchbench times one restore_command call per segment, the way
// PostgreSQL makes it: %p (pg_wal/RECOVERYXLOG) is removed, then
// `/bin/sh -c COMMAND` runs, timed from fork to exit. bench/fetch-calls.sh
// drives it; BENCHMARKS.md ("Fetch") explains the figures.
//
// For each kind of WAL (-kind name=DIR of segment files) it builds four
// sources under -dir: a directory of plain segments (for cp), a walship
// archive pushed with zstd (the default), one pushed --compress none and one
// pushed --compress s2.
// Then, in -rounds interleaved rounds, every segment is restored by every
// command in turn (the first command rotates from segment to segment):
//
//	cp                         cp plain/%f %p
//	walship fetch, zstd        walship fetch --prefetch 0 --archive zstd %f %p
//	walship fetch, raw         walship fetch --prefetch 0 --archive raw %f %p
//	walship fetch, s2          walship fetch --prefetch 0 --archive s2 %f %p
//
// --prefetch 0, because a call with prefetch starts a background prefetcher
// whose work is not the call's (bench/fetch.sh measures replay with it).
// The fixed cost of a call for a missing segment is timed too. Free memory
// is filled with page cache (-fill) before every round.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/walship/walship/bench/stats"
)

type kindFlags []string

func (k *kindFlags) String() string     { return strings.Join(*k, ",") }
func (k *kindFlags) Set(v string) error { *k = append(*k, v); return nil }

var (
	walship   = flag.String("walship", "walship", "the walship binary")
	baseBin   = flag.String("base", "", "an older walship binary, timed in the same rounds (\"base\" rows)")
	dir       = flag.String("dir", "", "work directory, on the file system of pg_wal")
	segments  = flag.Int("segments", 20, "segments of each kind")
	rounds    = flag.Int("rounds", 5, "interleaved rounds")
	fillFile  = flag.String("fill", "", "large sparse file read to fill free memory with page cache before each round")
	reserveMB = flag.Int64("reserve-mb", 2048, "free memory left when filling")
)

type cmd struct{ name, line string }

func main() {
	var kinds kindFlags
	flag.Var(&kinds, "kind", "name=DIR of source segments (repeatable)")
	flag.Parse()
	if *dir == "" || len(kinds) == 0 {
		fmt.Fprintln(os.Stderr, "usage: fetchbench -dir DIR -kind name=DIR [-kind …] [-walship BIN]")
		os.Exit(2)
	}
	if err := run(kinds); err != nil {
		fmt.Fprintln(os.Stderr, "fetchbench:", err)
		os.Exit(1)
	}
}

func run(kinds []string) error {
	pgwal := filepath.Join(*dir, "pg_wal")
	if err := os.MkdirAll(pgwal, 0o700); err != nil {
		return err
	}
	dest := filepath.Join(pgwal, "RECOVERYXLOG")
	fmt.Printf("One restore_command call per segment, /bin/sh -c as PostgreSQL runs it, %%p removed before each; "+
		"%d segments of each kind x %d interleaved rounds, %d CPUs, ms\n\n", *segments, *rounds, runtime.NumCPU())
	fmt.Printf("| %-8s | %-22s | %6s | %6s | %6s | %5s |\n", "WAL", "command", "median", "p90", "max", "× cp")
	fmt.Printf("|%s|%s|%s|%s|%s|%s|\n", dashes(10), dashes(24), dashes(8), dashes(8), dashes(8), dashes(7))
	for _, k := range kinds {
		name, src, ok := strings.Cut(k, "=")
		if !ok {
			return fmt.Errorf("-kind %q: want name=DIR", k)
		}
		files, err := prepare(name, src)
		if err != nil {
			return err
		}
		base := filepath.Join(*dir, name)
		cmds := []cmd{
			{"cp", "cp " + filepath.Join(base, "plain") + "/%f %p"},
			{"walship fetch, zstd", *walship + " fetch --prefetch 0 --archive " + filepath.Join(base, "zstd") + " %f %p"},
			{"walship fetch, raw", *walship + " fetch --prefetch 0 --archive " + filepath.Join(base, "raw") + " %f %p"},
			{"walship fetch, s2", *walship + " fetch --prefetch 0 --archive " + filepath.Join(base, "s2") + " %f %p"},
		}
		if *baseBin != "" {
			cmds = append(cmds,
				cmd{"base fetch, zstd", *baseBin + " fetch --prefetch 0 --archive " + filepath.Join(base, "zstd") + " %f %p"},
				cmd{"base fetch, raw", *baseBin + " fetch --prefetch 0 --archive " + filepath.Join(base, "raw") + " %f %p"})
		}
		times := make([][]float64, len(cmds))
		for r := 0; r < *rounds; r++ {
			topUp()
			readAll(base)
			for i, f := range files {
				for j := range cmds {
					c := (i + r + j) % len(cmds)
					ms, err := call(cmds[c].line, f, dest)
					if err != nil {
						return fmt.Errorf("%s %s: %w", cmds[c].name, f, err)
					}
					times[c] = append(times[c], ms)
				}
			}
		}
		cpMed := stats.Median(times[0])
		for j, c := range cmds {
			m := stats.Median(times[j])
			fmt.Printf("| %-8s | %-22s | %6.2f | %6.2f | %6.2f | %5.2f |\n", name, c.name, m,
				stats.Pct(times[j], 90), stats.Pct(times[j], 100), m/cpMed)
		}
	}
	// The fixed cost: a segment the archive does not hold (exit 1).
	const missing = "0000000100000FFF000000FF"
	base := filepath.Join(*dir, strings.SplitN(kinds[0], "=", 2)[0])
	fixed := []cmd{
		{"cp, missing", "cp " + filepath.Join(base, "plain") + "/%f %p"},
		{"walship fetch, missing", *walship + " fetch --archive " + filepath.Join(base, "zstd") + " %f %p"},
	}
	if *baseBin != "" {
		fixed = append(fixed, cmd{"base fetch, missing", *baseBin + " fetch --archive " + filepath.Join(base, "zstd") + " %f %p"})
	}
	times := make([][]float64, len(fixed))
	for i := 0; i < 50*len(fixed); i++ {
		c := i % len(fixed)
		ms, _ := call(fixed[c].line, missing, dest)
		times[c] = append(times[c], ms)
	}
	for j, c := range fixed {
		fmt.Printf("| %-8s | %-22s | %6.2f | %6.2f | %6.2f | %5.2f |\n", "-", c.name, stats.Median(times[j]),
			stats.Pct(times[j], 90), stats.Pct(times[j], 100), stats.Median(times[j])/stats.Median(times[0]))
	}
	fmt.Printf("\n1-minute load average at the end: %s\n", loadAvg())
	return nil
}

// prepare fills DIR/name/{plain,zstd,raw} with the first -segments
// segments of src, once, and returns their names.
func prepare(name, src string) ([]string, error) {
	entries, err := os.ReadDir(src)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if len(e.Name()) == 24 && strings.Trim(e.Name(), "0123456789ABCDEF") == "" {
			files = append(files, e.Name())
		}
	}
	if len(files) > *segments {
		files = files[:*segments]
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no segments in %s", src)
	}
	base := filepath.Join(*dir, name)
	if _, err := os.Stat(filepath.Join(base, "done-s2-"+strconv.Itoa(len(files)))); err == nil {
		return files, nil
	}
	os.RemoveAll(base)
	plain := filepath.Join(base, "plain")
	for _, d := range []string{plain, filepath.Join(base, "zstd"), filepath.Join(base, "raw"), filepath.Join(base, "s2")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		p := filepath.Join(src, f)
		for _, c := range [][]string{
			{"cp", p, filepath.Join(plain, f)},
			{*walship, "push", "--archive", filepath.Join(base, "zstd"), p, f},
			{*walship, "push", "--archive", filepath.Join(base, "raw"), "--compress", "none", p, f},
			{*walship, "push", "--archive", filepath.Join(base, "s2"), "--compress", "s2", p, f},
		} {
			if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("%s: %w: %s", strings.Join(c, " "), err, out)
			}
		}
	}
	return files, os.WriteFile(filepath.Join(base, "done-s2-"+strconv.Itoa(len(files))), nil, 0o600)
}

// call removes dest, as the server removes %p, and times one call of line
// with %f and %p replaced.
func call(line, f, dest string) (float64, error) {
	if err := os.Remove(dest); err != nil && !os.IsNotExist(err) {
		return 0, err
	}
	line = strings.NewReplacer("%f", f, "%p", dest).Replace(line)
	c := exec.Command("/bin/sh", "-c", line)
	c.Env = append(os.Environ(), "WALSHIP_LOG_LEVEL=error")
	start := time.Now()
	err := c.Run()
	ms := float64(time.Since(start).Microseconds()) / 1000
	if _, ok := err.(*exec.ExitError); ok && strings.Contains(f, "FFF") {
		err = nil // the missing segment: exit 1 expected
	}
	return ms, err
}

// readAll reads every source under base, so that each round starts with
// them cached, as a recently archived segment is.
func readAll(base string) {
	filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, err := os.ReadFile(p); err == nil {
				_ = b
			}
		}
		return nil
	})
}

// topUp fills free memory with page cache (BENCHMARKING.md): these VMs
// hand freed memory back to the host, and writing into it again is slow.
func topUp() {
	if *fillFile == "" {
		return
	}
	want := memFree() - *reserveMB<<20
	f, err := os.Open(*fillFile)
	if err != nil || want <= 0 {
		return
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	for off := int64(0); off < want; off += int64(len(buf)) {
		if _, err := f.ReadAt(buf, off); err != nil {
			return
		}
	}
}

func memFree() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemFree:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func dashes(n int) string { return strings.Repeat("-", n) }
