package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/local"
	"github.com/walship/walship/shipper"
	"github.com/walship/walship/wal"
)

const metricsSysID = 7400000000000000001

// fakeSource is a primary whose pg_wal holds segments made by segment.
type fakeSource struct {
	mu  sync.Mutex
	pos shipper.Position
}

func (s *fakeSource) set(lsn wal.LSN) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pos.LSN = lsn
}

func (s *fakeSource) Flush(context.Context) (shipper.Position, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pos, nil
}

func (s *fakeSource) OpenSegment(name string) (shipper.SegmentFile, error) {
	n, err := wal.ParseName(name)
	if err != nil {
		return nil, err
	}
	segno, _ := n.SegNo(1 << 20)
	return nopCloser{bytes.NewReader(segment(metricsSysID, uint64(segno), 0x42))}, nil
}

type nopCloser struct{ io.ReaderAt }

func (nopCloser) Close() error { return nil }

// downStorage fails every Put while down is set.
type downStorage struct {
	archive.Storage
	down bool
}

func (s *downStorage) Put(ctx context.Context, name string, r io.Reader) error {
	if s.down {
		return errors.New("archive unreachable")
	}
	return s.Storage.Put(ctx, name, r)
}

// scrape fetches url and returns the value of each series, keyed as it is
// written: name{labels}.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	series := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("GET %s: bad line %q", url, line)
		}
		series[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return series
}

// checkSeries checks the value of each series in want, and that a series
// named in want with a value below 0 is absent.
func checkSeries(t *testing.T, when string, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		switch {
		case w < 0 && ok:
			t.Errorf("%s: %s = %v, want it absent", when, k, g)
		case w >= 0 && !ok:
			t.Errorf("%s: no %s", when, k)
		case w >= 0 && g != w:
			t.Errorf("%s: %s = %v, want %v", when, k, g, w)
		}
	}
}

// Each metric moves when the Tail does what it counts, as Prometheus sees
// it over HTTP.
func TestTailMetrics(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := newTailMetrics()
	addr, done, err := serveMetrics(ctx, logger, "127.0.0.1:0", m.handler())
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + addr.String() + "/metrics"

	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	arch := &downStorage{Storage: st}
	const seg = 1 << 20
	src := &fakeSource{pos: shipper.Position{LSN: 2*seg + 100000, TLI: 1, SegmentSize: seg}}
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tl := &shipper.Tail{Storage: arch, Source: src, Compression: archive.None, Observer: m,
		Now: func() time.Time { return now }}
	const archived = `walship_tail_last_archived_segment_info{segment="000000010000000000000002"}`

	got := scrape(t, url)
	checkSeries(t, "before the first poll", got, map[string]float64{
		"walship_tail_shipped_lsn":          0,
		"walship_tail_lag_bytes":            0,
		"walship_tail_lag_seconds":          0,
		"walship_tail_increments_total":     0,
		"walship_tail_wal_bytes_total":      0,
		"walship_tail_stored_bytes_total":   0,
		"walship_tail_archive_errors_total": 0,
		archived:                            -1,
	})
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if _, ok := got[name]; !ok {
			t.Errorf("no %s: the Go and process collectors are missing", name)
		}
	}

	if err := tl.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkSeries(t, "after an increment", scrape(t, url), map[string]float64{
		"walship_tail_shipped_lsn":          2*seg + 100000,
		"walship_tail_lag_bytes":            0,
		"walship_tail_lag_seconds":          0,
		"walship_tail_increments_total":     1,
		"walship_tail_wal_bytes_total":      100000,
		"walship_tail_stored_bytes_total":   100000,
		"walship_tail_archive_errors_total": 0,
	})

	arch.down = true
	src.set(2*seg + 150000)
	now = now.Add(4 * time.Second)
	if err := tl.Step(context.Background()); err == nil {
		t.Fatal("Step with the archive down: got nil, want an error")
	}
	checkSeries(t, "with the archive down", scrape(t, url), map[string]float64{
		"walship_tail_shipped_lsn":          2*seg + 100000,
		"walship_tail_lag_bytes":            50000,
		"walship_tail_lag_seconds":          4,
		"walship_tail_increments_total":     1,
		"walship_tail_wal_bytes_total":      100000,
		"walship_tail_archive_errors_total": 1,
		archived:                            -1,
	})

	// The server moves on to segment 3: the rest of segment 2 is shipped,
	// and then the start of segment 3.
	arch.down = false
	src.set(3*seg + 10)
	if err := tl.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkSeries(t, "after the next segment", scrape(t, url), map[string]float64{
		"walship_tail_shipped_lsn":          3*seg + 10,
		"walship_tail_lag_bytes":            0,
		"walship_tail_lag_seconds":          0,
		"walship_tail_increments_total":     3,
		"walship_tail_wal_bytes_total":      seg + 10,
		"walship_tail_stored_bytes_total":   seg + 10,
		"walship_tail_archive_errors_total": 1,
		archived:                            1,
	})

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the metrics server did not stop within 5 s of ctx ending")
	}
	if resp, err := http.Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("GET %s after ctx ended: %s, want it refused", url, resp.Status)
	}
}

// walship tail --metrics-addr serves the metrics while it runs, also while
// the server is unreachable, and stops serving when it stops.
func TestTailMetricsAddr(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan int, 1)
	go func() {
		code, _ := tailApp(ctx, &out)("tail", "--archive", t.TempDir(), "--pgdata", t.TempDir(),
			"--dsn", "host=/nonexistent port=1", "--metrics-addr", "127.0.0.1:0")
		done <- code
	}()
	re := regexp.MustCompile(`url=(http://\S+/metrics)`)
	var url string
	for deadline := time.Now().Add(10 * time.Second); url == ""; time.Sleep(5 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no metrics URL logged within 10 s:\n%s", out.String())
		}
	}
	got := scrape(t, url)
	for _, name := range []string{"walship_tail_shipped_lsn", "walship_tail_lag_bytes", "walship_tail_lag_seconds",
		"walship_tail_increments_total", "walship_tail_wal_bytes_total", "walship_tail_stored_bytes_total",
		"walship_tail_archive_errors_total"} {
		if _, ok := got[name]; !ok {
			t.Errorf("no %s in the metrics", name)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d after ctx ended, want 0:\n%s", code, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("walship tail did not stop within 10 s")
	}
	if resp, err := http.Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("GET %s after walship tail stopped: %s, want it refused", url, resp.Status)
	}
}

// An address walship cannot listen on is a usage error at startup, from the
// flag or the environment.
func TestTailMetricsAddrErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name string
		env  string
		args []string
	}{
		{"port in use", "", []string{"--metrics-addr", busy.Addr().String()}},
		{"no port", "localhost", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WALSHIP_METRICS_ADDR", tc.env)
			var out syncBuffer
			args := append([]string{"tail", "--archive", t.TempDir(), "--dsn", "host=/nonexistent port=1"}, tc.args...)
			code, err := tailApp(context.Background(), &out)(args...)
			if code != exitUsage || err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
				t.Errorf("exit %d (%v), want %d and an error naming --metrics-addr", code, err, exitUsage)
			}
		})
	}
}
