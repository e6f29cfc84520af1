package main

import (
	"bytes"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Prometheus metrics are written here by hand, in the text exposition
// format 0.0.4, rather than through client_golang: every walship process,
// a push or a fetch too, would pay for its package initialisation (its
// registry, procfs, protobuf, expvar: about 0.8 ms of the 4 ms a call cost,
// and a third of the binary), and tail and exporter need only gauges and
// counters with labels.

// A promKind is the TYPE of a metric family.
type promKind string

const (
	promGauge   promKind = "gauge"
	promCounter promKind = "counter"
)

// promSet is the metrics of one scrape, gathered by name. The zero value
// is empty and ready.
type promSet struct {
	fams map[string]*promFamily
}

type promFamily struct {
	help   string
	kind   promKind
	series []promSeries
}

// promSeries is one sample: its labels sorted by name, as name, value pairs.
type promSeries struct {
	labels []string
	value  float64
}

// add records one sample of the family name; labels are name, value pairs.
// The first sample of a family sets its help and kind.
func (s *promSet) add(name, help string, kind promKind, v float64, labels ...string) {
	if s.fams == nil {
		s.fams = map[string]*promFamily{}
	}
	f := s.fams[name]
	if f == nil {
		f = &promFamily{help: help, kind: kind}
		s.fams[name] = f
	}
	pairs := make([][2]string, 0, len(labels)/2)
	for i := 0; i+1 < len(labels); i += 2 {
		pairs = append(pairs, [2]string{labels[i], labels[i+1]})
	}
	slices.SortFunc(pairs, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	sorted := make([]string, 0, len(labels))
	for _, p := range pairs {
		sorted = append(sorted, p[0], p[1])
	}
	f.series = append(f.series, promSeries{labels: sorted, value: v})
}

// gauge and counter are add for a family of that kind.
func (s *promSet) gauge(name, help string, v float64, labels ...string) {
	s.add(name, help, promGauge, v, labels...)
}

func (s *promSet) counter(name, help string, v float64, labels ...string) {
	s.add(name, help, promCounter, v, labels...)
}

// text returns the set in the text format: families sorted by name, the
// series of each sorted by their label values, as client_golang writes
// them, so that a scrape is the same text whenever the values are.
func (s *promSet) text() []byte {
	var b bytes.Buffer
	names := make([]string, 0, len(s.fams))
	for n := range s.fams {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		f := s.fams[n]
		// By label values in the order of the label names (their text
		// would sort "a b" after "a").
		slices.SortStableFunc(f.series, func(a, b promSeries) int { return slices.Compare(a.labels, b.labels) })
		b.WriteString("# HELP " + n + " ")
		b.WriteString(helpEscaper.Replace(f.help))
		b.WriteString("\n# TYPE " + n + " " + string(f.kind) + "\n")
		for _, sr := range f.series {
			b.WriteString(n)
			if len(sr.labels) > 0 {
				b.WriteByte('{')
				for i := 0; i < len(sr.labels); i += 2 {
					if i > 0 {
						b.WriteByte(',')
					}
					b.WriteString(sr.labels[i] + `="` + labelEscaper.Replace(sr.labels[i+1]) + `"`)
				}
				b.WriteByte('}')
			}
			b.WriteByte(' ')
			b.WriteString(promFloat(sr.value))
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// promFloat writes v as client_golang does.
func promFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// promHandler serves what collect adds to a fresh set at each scrape.
func promHandler(collect func(*promSet)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var s promSet
		collect(&s)
		b := s.text()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	})
}

// collectProcess adds the metrics of the Go runtime and of the process
// that matter for a long-running walship (tail, exporter): the subset of
// client_golang's Go and process collectors that alerts and dashboards use,
// under their names. Left out: go_gc_duration_seconds (a summary) and the
// finer go_memstats_* figures, and process_network_*.
func collectProcess(s *promSet) {
	s.gauge("go_goroutines", "Number of goroutines that currently exist.", float64(runtime.NumGoroutine()))
	n, _ := runtime.ThreadCreateProfile(nil)
	s.gauge("go_threads", "Number of OS threads created.", float64(n))
	s.gauge("go_info", "Information about the Go environment.", 1, "version", runtime.Version())
	s.gauge("go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting, or the number of operating system threads that can execute user-level Go code simultaneously.",
		float64(runtime.GOMAXPROCS(0)))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.gauge("go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use.", float64(ms.HeapAlloc))
	s.gauge("go_memstats_sys_bytes", "Number of bytes obtained from system.", float64(ms.Sys))
	s.gauge("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use.", float64(ms.HeapInuse))
	s.counter("go_gc_cycles_total", "Count of completed GC cycles.", float64(ms.NumGC))

	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		s.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", cpu.Seconds())
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.gauge("process_open_fds", "Number of open file descriptors.", float64(len(fds)))
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		s.gauge("process_max_fds", "Maximum number of open file descriptors.", float64(rl.Cur))
	}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 2 {
			size, _ := strconv.ParseFloat(f[0], 64)
			rss, _ := strconv.ParseFloat(f[1], 64)
			page := float64(os.Getpagesize())
			s.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", size*page)
			s.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", rss*page)
		}
	}
	if t, ok := processStart(); ok {
		s.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", t)
	}
}

// processStart returns when the process started, in seconds since the
// epoch, from /proc as procfs computes it: the boot time plus the start
// in clock ticks (100 a second on Linux).
var processStart = sync.OnceValues(func() (float64, bool) {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	// The command name, in parentheses, may hold spaces: fields count from
	// after it. starttime is field 22, the 20th after the name.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return 0, false
	}
	ticks, err := strconv.ParseFloat(f[19], 64)
	if err != nil {
		return 0, false
	}
	boot, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(boot), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			bt, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, false
			}
			return bt + ticks/100, true
		}
	}
	return 0, false
})
