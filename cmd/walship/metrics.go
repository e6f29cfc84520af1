package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/walship/walship/shipper"
	"github.com/walship/walship/wal"
)

// tailMetrics turns what a shipper.Tail does into Prometheus metrics.
type tailMetrics struct {
	mu            sync.Mutex
	shippedLSN    float64
	lagBytes      float64
	lagSeconds    float64
	increments    float64
	walBytes      float64
	storedBytes   float64
	archiveErrors float64
	lastArchived  string // the segment of walship_tail_last_archived_segment_info; "" for none yet
}

var _ shipper.TailObserver = (*tailMetrics)(nil)

func newTailMetrics() *tailMetrics { return &tailMetrics{} }

func (m *tailMetrics) Shipped(segment string, end wal.LSN, walBytes, storedBytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.increments++
	m.walBytes += float64(walBytes)
	m.storedBytes += float64(storedBytes)
	m.shippedLSN = float64(end)
}

func (m *tailMetrics) Lag(l shipper.TailLag) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l.Shipped != 0 { // else the tail does not know yet
		m.shippedLSN = float64(l.Shipped)
	}
	m.lagBytes = float64(l.Bytes)
	m.lagSeconds = l.Seconds
}

func (m *tailMetrics) ArchiveError(error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.archiveErrors++
}

// SegmentArchived moves the label of walship_tail_last_archived_segment_info
// in one step: a scrape sees the old segment or the new one, never none.
func (m *tailMetrics) SegmentArchived(segment string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastArchived = segment
}

// collect adds the metrics to s.
func (m *tailMetrics) collect(s *promSet) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// A float64 holds an LSN exactly up to 2^53 bytes, 8 PiB of WAL.
	s.gauge("walship_tail_shipped_lsn", "Where the WAL in the archive ends, as an LSN in bytes.", m.shippedLSN)
	s.gauge("walship_tail_lag_bytes",
		"WAL the server has flushed and the archive lacks, as of the last poll that reached the server.", m.lagBytes)
	s.gauge("walship_tail_lag_seconds",
		"Seconds since everything the server had flushed was in the archive; grows while the server or the archive fails.", m.lagSeconds)
	s.counter("walship_tail_increments_total", "Tail increments stored in the archive.", m.increments)
	s.counter("walship_tail_wal_bytes_total", "Bytes of WAL shipped.", m.walBytes)
	s.counter("walship_tail_stored_bytes_total", "Bytes stored in the archive, after compression.", m.storedBytes)
	s.counter("walship_tail_archive_errors_total", "Archive operations that failed; each is retried.", m.archiveErrors)
	if m.lastArchived != "" {
		s.gauge("walship_tail_last_archived_segment_info",
			"The last segment all of whose WAL is in the archive, whole or as tail increments; always 1.", 1,
			"segment", m.lastArchived)
	}
}

// handler serves the metrics, and those of the process, in Prometheus's
// text format.
func (m *tailMetrics) handler() http.Handler {
	return promHandler(func(s *promSet) {
		m.collect(s)
		collectProcess(s)
	})
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
