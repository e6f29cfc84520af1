// Command pushbench times archive_command implementations the way
// PostgreSQL runs them: one `/bin/sh -c COMMAND` process per WAL segment,
// back to back, timed from fork to exit. bench/run drives it; BENCHMARKS.md
// explains the figures.
//
// Tools are interleaved: every round pushes all segments of every kind with
// every tool (the starting tool rotates from round to round), each pass into
// a fresh, empty archive, so drift of the shared machine hits all tools
// alike. Between passes the archive is removed, the file systems are synced
// and free memory is filled with page cache again (see topUp), so every pass
// writes into memory the VM has mapped, as on a busy server.
//
// The tools file has one tool per line, three tab-separated fields:
//
//	name	setup-command	archive-command
//
// {p} is replaced by the segment's path, {f} by its name and {dir} by the
// pass's archive directory (which does not exist before setup runs). Lines
// starting with # are ignored.
//
// With -fixed, the file instead holds `name<TAB>command` lines, each run -n
// times interleaved; their exit codes are reported, not required to be 0.
// -exec runs each command directly (split at spaces), not through
// /bin/sh -c, so the shell's own start does not hide the cost measured;
// -ratios then names a/b pairs of line names.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walship/walship/bench/stats"
)

type tool struct {
	name, setup, command string
}

type kind struct {
	name  string
	dir   string
	files []string // segment names, sorted
}

type sample struct {
	phase, kind, tool string
	round, seq        int
	file              string
	ms                float64
	exit              int
}

type kindFlags []string

func (k *kindFlags) String() string     { return strings.Join(*k, ",") }
func (k *kindFlags) Set(v string) error { *k = append(*k, v); return nil }

var (
	toolsFile = flag.String("tools", "", "tools file (see the package comment)")
	fixedFile = flag.String("fixed", "", "fixed-cost commands file: name<TAB>command")
	segments  = flag.Int("segments", 100, "segments of each kind per pass")
	rounds    = flag.Int("rounds", 5, "interleaved rounds")
	warmup    = flag.Int("warmup", 5, "untimed calls per tool and kind before round 1")
	iters     = flag.Int("n", 100, "calls of each fixed-cost command")
	target    = flag.String("target", "", "directory the archives are created in (the loop file system)")
	fillFile  = flag.String("fill", "", "large sparse file read to fill free memory with page cache between passes")
	reserveMB = flag.Int64("reserve-mb", 1024, "free memory left when filling")
	rawOut    = flag.String("raw", "", "CSV file of every call")
	ratios    = flag.String("ratios", "", "comma-separated a/b pairs of tool names to report ratios of medians for")
	direct    = flag.Bool("exec", false, "with -fixed: run each command directly, split at spaces, not through /bin/sh -c")
	kinds     kindFlags
)

func main() {
	flag.Var(&kinds, "kind", "name=DIR of source segments (repeatable)")
	flag.Parse()
	var err error
	switch {
	case *fixedFile != "":
		err = runFixed()
	case *toolsFile != "":
		err = runPush()
	default:
		err = fmt.Errorf("need -tools or -fixed")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		os.Exit(1)
	}
}

func readLines(path string, fields int) ([][]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][]string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != fields {
			return nil, fmt.Errorf("%s: want %d tab-separated fields: %q", path, fields, line)
		}
		out = append(out, f)
	}
	return out, nil
}

func loadKinds() ([]kind, error) {
	var ks []kind
	for _, kv := range kinds {
		name, dir, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("-kind %q: want name=DIR", kv)
		}
		dir, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		k := kind{name: name, dir: dir}
		for _, e := range ents {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				k.files = append(k.files, e.Name())
			}
		}
		if len(k.files) < *segments {
			return nil, fmt.Errorf("%s has %d segments, want %d", dir, len(k.files), *segments)
		}
		k.files = k.files[:*segments]
		ks = append(ks, k)
	}
	return ks, nil
}

func expand(s string, p, f, dir string) string {
	return strings.NewReplacer("{p}", p, "{f}", f, "{dir}", dir).Replace(s)
}

// call runs command as PostgreSQL runs archive_command (system(3): /bin/sh
// -c, in the data directory) and returns its wall time and exit code.
func call(command, cwd string) (time.Duration, int, string) {
	cmd := exec.Command("/bin/sh", "-c", command)
	if *direct {
		f := strings.Fields(command)
		cmd = exec.Command(f[0], f[1:]...)
	}
	cmd.Dir = cwd
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return d, code, out.String()
}

func sh(command string) error {
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

func runPush() error {
	lines, err := readLines(*toolsFile, 3)
	if err != nil {
		return err
	}
	var tools []tool
	for _, l := range lines {
		tools = append(tools, tool{l[0], l[1], l[2]})
	}
	ks, err := loadKinds()
	if err != nil {
		return err
	}
	if *target == "" {
		return fmt.Errorf("need -target")
	}
	var raw *csvOut
	if *rawOut != "" {
		if raw, err = newCSV(*rawOut); err != nil {
			return err
		}
		defer raw.close()
	}
	sizes := map[string]int64{} // kind/tool → archive bytes of one pass

	pass := func(round int, k kind, t tool, n int, timed bool) error {
		dir := filepath.Join(*target, t.name+"-"+k.name)
		os.RemoveAll(dir)
		if t.setup != "" {
			if err := sh(expand(t.setup, "", "", dir)); err != nil {
				return fmt.Errorf("%s setup: %w", t.name, err)
			}
		}
		readAll(k) // sources stay in page cache, as a just-written segment is
		unix.Sync()
		topUp()
		var times []float64
		for i, f := range k.files[:n] {
			p := filepath.Join(k.dir, f)
			d, code, out := call(expand(t.command, p, f, dir), k.dir)
			if code != 0 {
				return fmt.Errorf("%s %s: exit %d: %s", t.name, f, code, out)
			}
			ms := float64(d.Microseconds()) / 1000
			times = append(times, ms)
			if timed && raw != nil {
				raw.write(sample{"push", k.name, t.name, round, i, f, ms, code})
			}
		}
		if timed {
			cnt, bytes, err := archived(dir, k.files[:n])
			if err != nil {
				return err
			}
			if cnt != n {
				return fmt.Errorf("%s: %d of %d segments in %s after the pass", t.name, cnt, n, dir)
			}
			sizes[k.name+"/"+t.name] = bytes
			fmt.Fprintf(os.Stderr, "   round %d %-8s %-18s median %7.2f ms\n", round, k.name, t.name, stats.Median(times))
		}
		return os.RemoveAll(dir)
	}

	if *warmup > 0 {
		fmt.Fprintf(os.Stderr, "   warm-up: %d untimed calls per tool and kind\n", *warmup)
		for _, k := range ks {
			for _, t := range tools {
				if err := pass(0, k, t, min(*warmup, len(k.files)), false); err != nil {
					return err
				}
			}
		}
	}
	for r := 1; r <= *rounds; r++ {
		loads = append(loads, loadAvg())
		for _, k := range ks {
			for i := range tools {
				t := tools[(i+r-1)%len(tools)]
				if err := pass(r, k, t, len(k.files), true); err != nil {
					return err
				}
			}
		}
	}
	if raw != nil {
		raw.close()
		return summarize(*rawOut, tools, ks, sizes)
	}
	return nil
}

// archived counts the files in dir named after one of names (walship's
// NAME[.zst], pgbackrest's NAME-SHA1[.EXT]) and sums their sizes.
func archived(dir string, names []string) (int, int64, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var cnt int
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b := d.Name()
		// walship push --compress none keeps a checksum beside each raw
		// segment (<segment>.xxh64): it is no segment of its own.
		if strings.HasSuffix(b, ".xxh64") {
			return nil
		}
		if len(b) >= 24 && want[b[:24]] {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			cnt++
			total += fi.Size()
		}
		return nil
	})
	return cnt, total, err
}

func readAll(k kind) {
	buf := make([]byte, 4<<20)
	for _, f := range k.files {
		if fh, err := os.Open(filepath.Join(k.dir, f)); err == nil {
			for {
				if _, err := fh.Read(buf); err != nil {
					break
				}
			}
			fh.Close()
		}
	}
}

// loads holds the 1-minute load average at the start of each round: other
// jobs on a shared machine show up there.
var loads []string

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

var fillOff int64

// topUp fills free memory with page cache by reading a part of a sparse file
// not read before. These VMs hand freed memory back to the host after a
// couple of seconds and writing into it again costs about 2 ms per MB; after
// the previous pass's archive is deleted, its page cache is free memory, so
// without this the next pass would pay for faulting it back in.
func topUp() {
	if *fillFile == "" {
		return
	}
	free := memFree()
	want := free - *reserveMB<<20
	if want <= 0 {
		return
	}
	f, err := os.Open(*fillFile)
	if err != nil {
		return
	}
	defer f.Close()
	fi, _ := f.Stat()
	if fillOff+want > fi.Size() {
		fillOff = 0
	}
	buf := make([]byte, 4<<20)
	for done := int64(0); done < want; {
		n, err := f.ReadAt(buf, fillOff)
		fillOff += int64(n)
		done += int64(n)
		if err != nil {
			break
		}
	}
}

func memFree() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemFree:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func runFixed() error {
	lines, err := readLines(*fixedFile, 2)
	if err != nil {
		return err
	}
	var raw *csvOut
	if *rawOut != "" {
		if raw, err = newCSV(*rawOut); err != nil {
			return err
		}
		defer raw.close()
	}
	times := make([][]float64, len(lines))
	codes := make([]int, len(lines))
	cwd, _ := os.Getwd()
	topUp()
	load0 := loadAvg()
	for i := 0; i < *iters+*warmup; i++ {
		for j, l := range lines {
			d, code, out := call(l[1], cwd)
			if i == 0 {
				codes[j] = code
				fmt.Fprintf(os.Stderr, "   %s: exit %d: %s", l[0], code, firstLine(out))
			}
			if i < *warmup {
				continue
			}
			ms := float64(d.Microseconds()) / 1000
			times[j] = append(times[j], ms)
			if raw != nil {
				raw.write(sample{"fixed", "-", l[0], 1, i - *warmup, "-", ms, code})
			}
		}
	}
	fmt.Printf("Fixed cost of one call (%d calls each, interleaved; ms)\n\n", *iters)
	fmt.Printf("| %-40s | %6s | %7s | %7s | %4s |\n", "command", "median", "p90", "p99", "exit")
	fmt.Printf("|%s|%s|%s|%s|%s|\n", dashes(42), dashes(8), dashes(9), dashes(9), dashes(6))
	for j, l := range lines {
		fmt.Printf("| %-40s | %6.2f | %7.2f | %7.2f | %4d |\n", l[0], stats.Median(times[j]), stats.Pct(times[j], 90), stats.Pct(times[j], 99), codes[j])
	}
	fmt.Printf("\n1-minute load average at the start and the end: %s, %s (%d CPUs)\n\n", load0, loadAvg(), runtime.NumCPU())
	if *ratios == "" {
		return nil
	}
	median := map[string]float64{}
	for j, l := range lines {
		median[l[0]] = stats.Median(times[j])
	}
	fmt.Printf("| %-60s | %6s | %8s |\n", "ratio of medians", "ratio", "ms more")
	fmt.Printf("|%s|%s|%s|\n", dashes(62), dashes(8), dashes(10))
	for _, pair := range strings.Split(*ratios, ",") {
		a, b, ok := strings.Cut(pair, "/")
		ma, oka := median[a]
		mb, okb := median[b]
		if !ok || !oka || !okb {
			return fmt.Errorf("-ratios %q: want a/b of two line names", pair)
		}
		fmt.Printf("| %-60s | %6.2f | %8.2f |\n", a+" / "+b, ma/mb, ma-mb)
	}
	fmt.Println()
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 150 {
		s = s[:150] + "…"
	}
	return s + "\n"
}

func dashes(n int) string { return strings.Repeat("-", n) }

type csvOut struct {
	f *os.File
	w *bufio.Writer
}

func newCSV(path string) (*csvOut, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	c := &csvOut{f: f, w: bufio.NewWriter(f)}
	fmt.Fprintln(c.w, "phase,round,kind,tool,seq,file,ms,exit")
	return c, nil
}

func (c *csvOut) write(s sample) {
	fmt.Fprintf(c.w, "%s,%d,%s,%s,%d,%s,%.3f,%d\n", s.phase, s.round, s.kind, s.tool, s.seq, s.file, s.ms, s.exit)
}

func (c *csvOut) close() {
	if c.f != nil {
		c.w.Flush()
		c.f.Close()
		c.f = nil
	}
}

// summarize prints the table of a push run from its raw CSV.
func summarize(rawPath string, tools []tool, ks []kind, sizes map[string]int64) error {
	f, err := os.Open(rawPath)
	if err != nil {
		return err
	}
	defer f.Close()
	all := map[string][]float64{}      // kind/tool
	perRound := map[string][]float64{} // kind/tool/round
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		c := strings.Split(sc.Text(), ",")
		if len(c) != 8 || c[0] != "push" {
			continue
		}
		ms, _ := strconv.ParseFloat(c[6], 64)
		all[c[2]+"/"+c[3]] = append(all[c[2]+"/"+c[3]], ms)
		perRound[c[2]+"/"+c[3]+"/"+c[1]] = append(perRound[c[2]+"/"+c[3]+"/"+c[1]], ms)
	}
	roundMedians := func(key string) []float64 {
		var m []float64
		for r := 1; r <= *rounds; r++ {
			if v := perRound[key+"/"+strconv.Itoa(r)]; len(v) > 0 {
				m = append(m, stats.Median(v))
			}
		}
		return m
	}
	fmt.Printf("Push: ms per 16 MiB segment, one process call per segment, %d segments x %d rounds per cell\n\n", *segments, *rounds)
	for _, k := range ks {
		fmt.Printf("%s WAL\n\n", k.name)
		fmt.Printf("| %-18s | %6s | %6s | %6s | %-15s | %6s | %10s | %6s |\n",
			"tool", "median", "p90", "p99", "round medians", "MB/s", "bytes/seg", "% raw")
		fmt.Printf("|%s|%s|%s|%s|%s|%s|%s|%s|\n", dashes(20), dashes(8), dashes(8), dashes(8), dashes(17), dashes(8), dashes(12), dashes(8))
		for _, t := range tools {
			key := k.name + "/" + t.name
			v := all[key]
			rm := roundMedians(key)
			per := float64(sizes[key]) / float64(*segments)
			fmt.Printf("| %-18s | %6.2f | %6.2f | %6.2f | %6.2f – %6.2f | %6.0f | %10.0f | %5.1f%% |\n",
				t.name, stats.Median(v), stats.Pct(v, 90), stats.Pct(v, 99), slices.Min(rm), slices.Max(rm),
				16/(stats.Median(v)/1000)*1.048576, per, 100*per/(16<<20))
		}
		fmt.Println()
	}
	fmt.Printf("1-minute load average at the start of each round: %s (2 CPUs)\n\n", strings.Join(loads, ", "))
	if *ratios != "" {
		fmt.Printf("Ratios of medians (pooled; in brackets the range of the per-round ratios)\n\n")
		fmt.Printf("| %-40s |", "ratio")
		for _, k := range ks {
			fmt.Printf(" %-18s |", k.name+" WAL")
		}
		fmt.Printf("\n|%s|", dashes(42))
		for range ks {
			fmt.Printf("%s|", dashes(20))
		}
		fmt.Println()
		for _, pair := range strings.Split(*ratios, ",") {
			a, b, ok := strings.Cut(pair, "/")
			if !ok {
				continue
			}
			fmt.Printf("| %-40s |", a+" / "+b)
			for _, k := range ks {
				ra, rb := roundMedians(k.name+"/"+a), roundMedians(k.name+"/"+b)
				var rr []float64
				for i := range min(len(ra), len(rb)) {
					rr = append(rr, ra[i]/rb[i])
				}
				if len(rr) == 0 {
					fmt.Printf(" %-8s |", "-")
					continue
				}
				fmt.Printf(" %.2f [%.2f–%.2f]   |", stats.Median(all[k.name+"/"+a])/stats.Median(all[k.name+"/"+b]), slices.Min(rr), slices.Max(rr))
			}
			fmt.Println()
		}
		fmt.Println()
	}
	return nil
}
