package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/walship/walship/shipper"
	"github.com/walship/walship/wal"
)

// tailMetrics turns what a shipper.Tail does into Prometheus metrics, in a
// registry of its own: the global one would mix in whatever any imported
// package registers.
type tailMetrics struct {
	reg *prometheus.Registry

	shippedLSN    prometheus.Gauge
	lagBytes      prometheus.Gauge
	lagSeconds    prometheus.Gauge
	increments    prometheus.Counter
	walBytes      prometheus.Counter
	storedBytes   prometheus.Counter
	archiveErrors prometheus.Counter
	lastArchived  *segmentInfo
}

var _ shipper.TailObserver = (*tailMetrics)(nil)

func newTailMetrics() *tailMetrics {
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &tailMetrics{
		reg: prometheus.NewRegistry(),
		// A float64 holds an LSN exactly up to 2^53 bytes, 8 PiB of WAL.
		shippedLSN: gauge("walship_tail_shipped_lsn",
			"Where the WAL in the archive ends, as an LSN in bytes."),
		lagBytes: gauge("walship_tail_lag_bytes",
			"WAL the server has flushed and the archive lacks, as of the last poll that reached the server."),
		lagSeconds: gauge("walship_tail_lag_seconds",
			"Seconds since everything the server had flushed was in the archive; grows while the server or the archive fails."),
		increments: counter("walship_tail_increments_total",
			"Tail increments stored in the archive."),
		walBytes: counter("walship_tail_wal_bytes_total",
			"Bytes of WAL shipped."),
		storedBytes: counter("walship_tail_stored_bytes_total",
			"Bytes stored in the archive, after compression."),
		archiveErrors: counter("walship_tail_archive_errors_total",
			"Archive operations that failed; each is retried."),
		lastArchived: &segmentInfo{desc: prometheus.NewDesc("walship_tail_last_archived_segment_info",
			"The last segment all of whose WAL is in the archive, whole or as tail increments; always 1.",
			[]string{"segment"}, nil)},
	}
	m.reg.MustRegister(m.shippedLSN, m.lagBytes, m.lagSeconds, m.increments, m.walBytes, m.storedBytes,
		m.archiveErrors, m.lastArchived,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *tailMetrics) Shipped(segment string, end wal.LSN, walBytes, storedBytes int64) {
	m.increments.Inc()
	m.walBytes.Add(float64(walBytes))
	m.storedBytes.Add(float64(storedBytes))
	m.shippedLSN.Set(float64(end))
}

func (m *tailMetrics) Lag(l shipper.TailLag) {
	if l.Shipped != 0 { // else the tail does not know yet
		m.shippedLSN.Set(float64(l.Shipped))
	}
	m.lagBytes.Set(float64(l.Bytes))
	m.lagSeconds.Set(l.Seconds)
}

func (m *tailMetrics) ArchiveError(error) { m.archiveErrors.Inc() }

func (m *tailMetrics) SegmentArchived(segment string) { m.lastArchived.set(segment) }

// handler serves the metrics in Prometheus's text format.
func (m *tailMetrics) handler(logger *slog.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)})
}

// segmentInfo is a metric whose label names a segment. A GaugeVec would
// need a Reset and a Set to move it, and a scrape between the two would see
// no segment at all.
type segmentInfo struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	name string
}

func (s *segmentInfo) set(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.name = name
}

func (s *segmentInfo) Describe(ch chan<- *prometheus.Desc) { ch <- s.desc }

func (s *segmentInfo) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	name := s.name
	s.mu.Unlock()
	if name != "" {
		ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, 1, name)
	}
}

// serveMetrics serves h at /metrics on addr until ctx is done, and returns
// the address it listens on and a channel closed once the server has shut
// down. It listens before it returns, so that a port in use stops walship at
// startup rather than in a log line nobody reads.
func serveMetrics(ctx context.Context, logger *slog.Logger, addr string, h http.Handler) (net.Addr, <-chan struct{}, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, usagef("--metrics-addr %s: %v", addr, err)
	}
	return serveListener(ctx, logger, ln, h)
}

// serveListener is serveMetrics on a listener the caller opened.
func serveListener(ctx context.Context, logger *slog.Logger, ln net.Listener, h http.Handler) (net.Addr, <-chan struct{}, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			logger.Error("the metrics server stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		// A scrape in flight gets a moment to finish; a stuck one does not
		// hold up the daemon's exit.
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()
	return ln.Addr(), done, nil
}
