package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/backup"
	"github.com/walship/walship/wal"
)

const exporterSegSize = 16 << 20

// makeCluster writes a cluster archive of segs segments (files of one byte:
// the exporter reads listings only) and backups backups into dir.
func makeCluster(t testing.TB, dir string, sysid uint64, segs, backups int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "backups"), 0o755); err != nil {
		t.Fatal(err)
	}
	id, _ := json.Marshal(archive.Identity{Format: 1, SystemID: sysid, PGVersion: 15, SegmentSize: exporterSegSize, BlockSize: 8192})
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	write("walship.json", id)
	for s := 1; s <= segs; s++ {
		suffix := ".zst"
		if s%3 == 2 {
			suffix = ".s2" // pushed with --compress s2: counted the same
		}
		write("wal/"+wal.SegmentName(1, wal.SegNo(s), exporterSegSize)+suffix, []byte("x"))
	}
	for i := range backups {
		start := wal.SegNo(1 + i*segs/backups)
		tm := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour)
		m := backup.Meta{Format: 1, ID: tm.Format("20060102T150405Z"), StartTime: tm, StopTime: tm.Add(time.Minute),
			StartLSN: start.Start(exporterSegSize) + 0x28, StopLSN: (start + 1).Start(exporterSegSize) + 0x100,
			StartTimeline: 1, StopTimeline: 1, SystemID: sysid, SegmentSize: exporterSegSize, Size: 1000, Stored: 100,
			Archives: []backup.ArchiveFile{{Name: "base.tar"}}, Manifest: "backup_manifest"}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		write("backups/"+m.ID+".json", b)
	}
}

// scrapeText encodes the exporter's last refresh as a scrape gets it,
// checks that Prometheus's own parser reads it, and returns the series keyed
// name{labels}.
func scrapeText(t testing.TB, e *exporter) (string, map[string]float64) {
	t.Helper()
	var set promSet
	e.collect(&set)
	text := string(set.text())
	parser := expfmt.NewTextParser(model.UTF8Validation)
	if _, err := parser.TextToMetricFamilies(strings.NewReader(text)); err != nil {
		t.Fatalf("Prometheus cannot parse the scrape: %v\n%s", err, text)
	}
	series := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		fmt.Sscan(line[i+1:], &v)
		series[line[:i]] = v
	}
	return text, series
}

// The exporter finds the clusters of a repository, serves their metrics,
// and counts an archive it cannot read as an error, not an exit.
func TestExporterRepo(t *testing.T) {
	repo := t.TempDir()
	makeCluster(t, filepath.Join(repo, "main"), 101, 10, 2)
	makeCluster(t, filepath.Join(repo, "reports"), 202, 5, 0)
	os.Remove(filepath.Join(repo, "main", "wal", wal.SegmentName(1, 4, exporterSegSize)+".zst"))
	e, err := newExporter(slog.New(slog.DiscardHandler), exporterOptions{Repo: repo, Interval: time.Second, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	ctx := context.Background()
	e.refresh(ctx)
	_, got := scrapeText(t, e)
	for k, v := range map[string]float64{
		`walship_repo_up`:                                                 1,
		`walship_repo_clusters`:                                           2,
		`walship_up{cluster="main"}`:                                      1,
		`walship_up{cluster="reports"}`:                                   1,
		`walship_backups{cluster="main"}`:                                 2,
		`walship_backups{cluster="reports"}`:                              0,
		`walship_backups_unusable{cluster="main"}`:                        1, // the first backup's chain crosses the gap
		`walship_wal_gaps{cluster="main",timeline="1"}`:                   1,
		`walship_wal_missing_segments{cluster="main",timeline="1"}`:       1,
		`walship_wal_segments{cluster="main",timeline="1"}`:               9,
		`walship_backup_size_bytes{backup="newest",cluster="main"}`:       1000,
		`walship_backup_duration_seconds{backup="oldest",cluster="main"}`: 60,
		`walship_wal_newest_segment_info{cluster="reports",segment="000000010000000000000005",timeline="1"}`:          1,
		`walship_wal_archived_lsn{cluster="reports"}`:                                                                 float64(6 * exporterSegSize),
		`walship_archive_info{cluster="reports",pg_version="15",system_identifier="202",wal_segment_size="16777216"}`: 1,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}

	// reports becomes unreadable: a file where backups/ was.
	os.RemoveAll(filepath.Join(repo, "reports", "backups"))
	os.WriteFile(filepath.Join(repo, "reports", "backups"), nil, 0o644)
	e.refresh(ctx)
	_, got = scrapeText(t, e)
	if got[`walship_up{cluster="reports"}`] != 0 || got[`walship_scrape_errors_total{cluster="reports"}`] != 1 ||
		got[`walship_up{cluster="main"}`] != 1 {
		t.Errorf("after reports broke: up %v, errors %v, main up %v", got[`walship_up{cluster="reports"}`],
			got[`walship_scrape_errors_total{cluster="reports"}`], got[`walship_up{cluster="main"}`])
	}
	if got[`walship_wal_segments{cluster="reports",timeline="1"}`] != 5 {
		t.Errorf("reports' metrics went away with the error: want the last good refresh's")
	}

	// A cluster that leaves the repository leaves the metrics.
	os.Remove(filepath.Join(repo, "reports", "walship.json"))
	e.refresh(ctx)
	if _, got = scrapeText(t, e); got[`walship_repo_clusters`] != 1 {
		t.Errorf("walship_repo_clusters = %v after reports left", got[`walship_repo_clusters`])
	}
}

func TestExporterUsage(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"exporter"},
		{"exporter", "--archive", dir, "--interval", "10ms"},
		{"exporter", "--cluster", "noequals"},
		{"exporter", "--cluster", "a/b=" + dir},
		{"exporter", "--archive", dir, "--cluster-dsn", "other=host=/tmp"},
		{"exporter", "--dsn", "host=/tmp"},
		{"exporter", "--archive", dir, "--listen", "256.0.0.1:1"},
		{"exporter", "--cluster", "a=" + dir, "--cluster", "a=" + dir},
	} {
		if code, stderr := walshipRun(t, args...); code != exitUsage {
			t.Errorf("walship %s: exit %d (%s), want %d", strings.Join(args, " "), code, stderr, exitUsage)
		}
	}
}

// Every metric the exporter serves is in the README, and the alert rules
// use only metrics it serves.
func TestExporterMetricsDocumented(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, m := range exporterMetrics() {
		known[m.name] = true
		if !bytes.Contains(readme, []byte(m.name)) {
			t.Errorf("README does not document %s", m.name)
		}
	}
	for _, f := range []string{"prometheus/walship-alerts.yml", "grafana/walship-dashboard.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "contrib", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range regexp.MustCompile(`walship_[a-z_]+[a-z]`).FindAllString(string(b), -1) {
			if !known[name] && !strings.HasPrefix(name, "walship_tail_") && name != "walship_exporter" {
				t.Errorf("contrib/%s uses %s, which walship exporter does not serve", f, name)
			}
		}
	}
}

// The alert rules pass promtool's checks and their unit tests. promtool is
// Debian's prometheus package; CI (CI set) installs it, elsewhere its
// absence skips.
func TestExporterAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is missing: apt-get install prometheus (.ci/run does)")
		}
		t.Skip("promtool is missing: apt-get install --no-install-recommends prometheus")
	}
	dir := filepath.Join("..", "..", "contrib", "prometheus")
	for _, args := range [][]string{{"check", "rules", "walship-alerts.yml"}, {"test", "rules", "walship-alerts.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// reportCPU reports the CPU time (user and system) of the process per
// operation, from the call to the deferred call of what it returns.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() { b.ReportMetric(float64(cpu()-start)/float64(b.N)/1e6, "cpu-ms/op") }
}

// BenchmarkExporterScrape is what one cluster of 10,000 segments and 20
// backups costs the exporter: a background refresh (listing the archive),
// and a scrape (encoding the last refresh).
func BenchmarkExporterScrape(b *testing.B) {
	repo := b.TempDir()
	makeCluster(b, filepath.Join(repo, "main"), 101, 10_000, 20)
	e, err := newExporter(slog.New(slog.DiscardHandler), exporterOptions{Repo: repo, Interval: time.Second, Timeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer e.close()
	ctx := context.Background()
	e.refresh(ctx)
	b.Run("refresh", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			e.refresh(ctx)
		}
	})
	b.Run("scrape", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			var set promSet
			e.collect(&set)
			io.Discard.Write(set.text())
		}
	})
}
