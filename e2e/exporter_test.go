package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/walship/walship/internal/pgtest"
)

// metrics is one scrape of the exporter, parsed by Prometheus's own parser.
type metrics map[string]*dto.MetricFamily

// scrapeExporter fetches url and parses it; a failure fails the test.
func scrapeExporter(t *testing.T, url string) metrics {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the scrape: %v", err)
	}
	return fams
}

// get returns the value of the series of name whose labels include want
// ("k=v" pairs), and whether there is one.
func (m metrics) get(name string, want ...string) (float64, bool) {
	f := m[name]
	if f == nil {
		return 0, false
	}
	for _, s := range f.Metric {
		labels := map[string]string{}
		for _, l := range s.Label {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			ok = ok && labels[k] == v
		}
		if !ok {
			continue
		}
		switch {
		case s.Gauge != nil:
			return s.Gauge.GetValue(), true
		case s.Counter != nil:
			return s.Counter.GetValue(), true
		}
	}
	return 0, false
}

// label returns the value of label key of the first series of name whose
// labels include want.
func (m metrics) label(name, key string, want ...string) string {
	f := m[name]
	if f == nil {
		return ""
	}
	for _, s := range f.Metric {
		labels := map[string]string{}
		for _, l := range s.Label {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			ok = ok && labels[k] == v
		}
		if ok {
			return labels[key]
		}
	}
	return ""
}

// exporterRun is a running walship exporter.
type exporterRun struct {
	url string
}

// startExporter runs walship exporter with args, on a free port, until the
// test ends, and waits until it serves.
func startExporter(t *testing.T, bin string, args ...string) *exporterRun {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", pgtest.FreePort(t))
	cmd := exec.Command(bin, append([]string{"exporter", "--listen", addr, "--interval", "1s"}, args...)...)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("exporter log:\n%s", log.String())
		}
	})
	e := &exporterRun{url: "http://" + addr + "/metrics"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("walship exporter exited: %v\n%s", waitErr, log.String())
		default:
		}
		resp, err := http.Get(e.url)
		if err == nil {
			resp.Body.Close()
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("walship exporter does not serve: %v\n%s", err, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFor scrapes until ok says yes, and fails the test after timeout.
func (e *exporterRun) waitFor(t *testing.T, what string, ok func(m metrics) bool) metrics {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		m := scrapeExporter(t, e.url)
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			var names []string
			for n, f := range m {
				if strings.HasPrefix(n, "walship_") {
					for _, s := range f.Metric {
						names = append(names, fmt.Sprintf("%s%v %v%v", n, s.Label, s.Gauge.GetValue(), s.Counter.GetValue()))
					}
				}
			}
			sort.Strings(names)
			t.Fatalf("timed out waiting for %s; last scrape:\n%s", what, strings.Join(names, "\n"))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestExporterRepository runs walship exporter on a repository of two
// clusters, each archiving into its own subdirectory, and checks that each
// metric moves when it should: a backup, a new segment, a gap made by
// removing a segment, an archive_command that starts failing and the lag
// that grows meanwhile, and an archive that cannot be read.
func TestExporterRepository(t *testing.T) {
	bin := pgtest.Walship(t)
	repo := pgtest.TempDir(t)
	setups := map[string]*backupSetup{}
	for _, name := range []string{"alpha", "beta"} {
		arch := filepath.Join(repo, name)
		if err := os.Mkdir(arch, 0o750); err != nil {
			t.Fatal(err)
		}
		pgtest.Chown(t, arch)
		s := &backupSetup{bin: bin, arch: arch}
		s.primary = pgtest.New(t, pgtest.Options{
			InitdbArgs: []string{"--wal-segsize=1"},
			Conf: []string{"archive_mode = on",
				fmt.Sprintf("archive_command = '%s push --archive %s %%p %%f'", bin, arch)},
		})
		s.archiveAll(t)
		setups[name] = s
	}
	alpha, beta := setups["alpha"], setups["beta"]
	e := startExporter(t, bin, "--repo", repo,
		"--cluster-dsn", "alpha="+alpha.primary.ConnString(), "--cluster-dsn", "beta="+beta.primary.ConnString())

	m := e.waitFor(t, "both clusters up", func(m metrics) bool {
		a, _ := m.get("walship_up", "cluster=alpha")
		b, _ := m.get("walship_up", "cluster=beta")
		pa, _ := m.get("walship_pg_up", "cluster=alpha")
		return a == 1 && b == 1 && pa == 1
	})
	if n, _ := m.get("walship_repo_clusters"); n != 2 {
		t.Errorf("walship_repo_clusters = %v, want 2", n)
	}
	ida := m.label("walship_archive_info", "system_identifier", "cluster=alpha")
	idb := m.label("walship_archive_info", "system_identifier", "cluster=beta")
	if ida == "" || ida == idb {
		t.Errorf("system identifiers %q and %q: want two different ones", ida, idb)
	}
	if n, ok := m.get("walship_backups", "cluster=alpha"); !ok || n != 0 {
		t.Errorf("walship_backups{alpha} = %v, %v before any backup", n, ok)
	}

	// A backup of alpha shows in alpha's metrics only.
	bm := alpha.backup(t, alpha.primary)
	m = e.waitFor(t, "alpha's backup", func(m metrics) bool {
		n, _ := m.get("walship_backups", "cluster=alpha")
		return n == 1
	})
	if id := m.label("walship_backup_info", "id", "cluster=alpha", "backup=newest"); id != bm.ID {
		t.Errorf("newest backup %q, want %q", id, bm.ID)
	}
	for _, name := range []string{"walship_backup_completion_timestamp_seconds", "walship_backup_size_bytes", "walship_backup_stored_bytes"} {
		if v, _ := m.get(name, "cluster=alpha", "backup=newest"); v <= 0 {
			t.Errorf("%s{alpha,newest} = %v, want > 0", name, v)
		}
	}
	if n, _ := m.get("walship_backups", "cluster=beta"); n != 0 {
		t.Errorf("walship_backups{beta} = %v, want 0", n)
	}

	// A new segment moves the newest WAL.
	lsn, _ := m.get("walship_wal_archived_lsn", "cluster=alpha")
	alpha.primary.Exec(t, "CREATE TABLE t AS SELECT generate_series(1, 1000) AS id")
	seg := alpha.primary.SwitchWAL(t)
	alpha.primary.WaitArchived(t, seg, time.Minute)
	m = e.waitFor(t, "the new segment "+seg, func(m metrics) bool {
		return m.label("walship_wal_newest_segment_info", "segment", "cluster=alpha") == seg
	})
	if v, _ := m.get("walship_wal_archived_lsn", "cluster=alpha"); v <= lsn {
		t.Errorf("walship_wal_archived_lsn{alpha} %v, was %v: want it to grow", v, lsn)
	}
	if v, _ := m.get("walship_wal_newest_archived_timestamp_seconds", "cluster=alpha"); time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("newest segment archived at %v", time.Unix(int64(v), 0))
	}
	if v, _ := m.get("walship_archive_lag_bytes", "cluster=alpha"); v >= 1<<20 {
		t.Errorf("walship_archive_lag_bytes{alpha} = %v with everything archived", v)
	}

	// Removing the backup's first segment makes a gap, and the backup
	// unusable.
	if err := os.Remove(filepath.Join(alpha.arch, "wal", bm.StartWAL+".zst")); err != nil {
		t.Fatal(err)
	}
	m = e.waitFor(t, "a gap", func(m metrics) bool {
		g, _ := m.get("walship_wal_gaps", "cluster=alpha", "timeline=1")
		return g == 1
	})
	if v, _ := m.get("walship_wal_missing_segments", "cluster=alpha", "timeline=1"); v != 1 {
		t.Errorf("walship_wal_missing_segments{alpha} = %v, want 1", v)
	}
	if v, _ := m.get("walship_backups_unusable", "cluster=alpha"); v != 1 {
		t.Errorf("walship_backups_unusable{alpha} = %v, want 1", v)
	}
	if v, _ := m.get("walship_wal_gaps", "cluster=beta", "timeline=1"); v != 0 {
		t.Errorf("walship_wal_gaps{beta} = %v, want 0", v)
	}

	// beta's archive becomes unwritable: archive_command fails, and the
	// lag grows, in bytes and seconds.
	failed, _ := m.get("walship_pg_archiver_failed_total", "cluster=beta")
	walDir := filepath.Join(beta.arch, "wal")
	if err := os.Chmod(walDir, 0o555); err != nil {
		t.Fatal(err)
	}
	beta.primary.Exec(t, "CREATE TABLE t AS SELECT generate_series(1, 1000) AS id")
	beta.primary.SwitchWAL(t)
	m = e.waitFor(t, "beta's archiver failing and lagging", func(m metrics) bool {
		f, _ := m.get("walship_pg_archiver_failed_total", "cluster=beta")
		s, _ := m.get("walship_archive_lag_seconds", "cluster=beta")
		return f > failed && s >= 2
	})
	lagBytes, _ := m.get("walship_archive_lag_bytes", "cluster=beta")
	if lagBytes <= 0 {
		t.Errorf("walship_archive_lag_bytes{beta} = %v while its archive fails", lagBytes)
	}
	if v, _ := m.get("walship_pg_archiver_last_failure_timestamp_seconds", "cluster=beta"); time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("last failure at %v", time.Unix(int64(v), 0))
	}
	lagSeconds, _ := m.get("walship_archive_lag_seconds", "cluster=beta")
	beta.primary.Exec(t, "INSERT INTO t SELECT generate_series(1, 10000)")
	beta.primary.SwitchWAL(t)
	e.waitFor(t, "beta's lag growing", func(m metrics) bool {
		b, _ := m.get("walship_archive_lag_bytes", "cluster=beta")
		s, _ := m.get("walship_archive_lag_seconds", "cluster=beta")
		return b > lagBytes && s > lagSeconds
	})
	if err := os.Chmod(walDir, 0o750); err != nil {
		t.Fatal(err)
	}
	seg = beta.primary.SwitchWAL(t) // wakes the archiver
	beta.primary.WaitArchived(t, seg, 2*time.Minute)
	e.waitFor(t, "beta caught up", func(m metrics) bool {
		b, _ := m.get("walship_archive_lag_bytes", "cluster=beta")
		return b < 1<<20
	})

	// An archive that cannot be read is walship_up 0 and a scrape error,
	// and the exporter goes on.
	errs, _ := m.get("walship_scrape_errors_total", "cluster=alpha")
	backups := filepath.Join(alpha.arch, "backups")
	if err := os.Rename(backups, backups+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(backups, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m = e.waitFor(t, "alpha down", func(m metrics) bool {
		up, _ := m.get("walship_up", "cluster=alpha")
		n, _ := m.get("walship_scrape_errors_total", "cluster=alpha")
		return up == 0 && n > errs
	})
	if up, _ := m.get("walship_up", "cluster=beta"); up != 1 {
		t.Errorf("walship_up{beta} = %v while only alpha fails", up)
	}
	if n, _ := m.get("walship_backups", "cluster=alpha"); n != 1 {
		t.Errorf("walship_backups{alpha} = %v while down: want the last value, 1", n)
	}
	os.Remove(backups)
	if err := os.Rename(backups+".away", backups); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, "alpha up again", func(m metrics) bool {
		up, _ := m.get("walship_up", "cluster=alpha")
		return up == 1
	})

	// info --repo lists both clusters.
	out := alpha.walship(t, "info", "--repo", repo)
	for _, want := range []string{"alpha", "beta", bm.ID, "2 clusters"} {
		if !strings.Contains(out, want) {
			t.Errorf("info --repo lacks %q:\n%s", want, out)
		}
	}
}
