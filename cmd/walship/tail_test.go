package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walship/walship/internal/pgtest"
)

// tailApp is the walship app with the tail command, whether or not newApp
// lists it yet.
func tailApp(ctx context.Context, out *syncBuffer) func(args ...string) (int, error) {
	return func(args ...string) (int, error) {
		app := newApp(out, out)
		if app.Command("tail") == nil {
			g := &globals{stdout: out, stderr: out, logger: slog.New(slog.NewTextHandler(out, nil))}
			c := tailCommand(g)
			c.OnUsageError = onUsageError
			app.Commands = append(app.Commands, c)
		}
		err := app.RunContext(ctx, append([]string{"walship"}, args...))
		return exitCode(err), err
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTailUsage(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("WALSHIP_ARCHIVE", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tail"}, "--archive"},
		{[]string{"tail", "--archive", dir, "--compress", "lz4"}, "compression"},
		{[]string{"tail", "--archive", dir, "--interval", "1ms"}, "--interval"},
		{[]string{"tail", "--archive", dir, "--interval", "soon"}, "interval"},
		{[]string{"tail", "--archive", dir, "--log-every", "0s"}, "--log-every"},
		{[]string{"tail", "--archive", dir, "extra"}, "no arguments"},
		{[]string{"tail", "--archive", "ftp://host/x"}, "ftp"},
	} {
		var out syncBuffer
		code, err := tailApp(context.Background(), &out)(tc.args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d (%v), want %d", tc.args, code, err, exitUsage)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %q, want it to mention %q", tc.args, err, tc.want)
		}
	}
}

// walship tail ships from a real server until it is told to stop, and then
// exits 0.
func TestTailCommand(t *testing.T) {
	skipShort(t)
	t.Parallel()
	c := pgtest.New(t, pgtest.Options{InitdbArgs: []string{"--wal-segsize=1"}})
	c.Exec(t, "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
	arch := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan int, 1)
	go func() {
		code, _ := tailApp(ctx, &out)("tail", "--archive", arch, "--pgdata", c.DataDir, "--dsn", c.ConnString(),
			"--interval", "50ms", "--log-every", "100ms", "--metrics-addr", "127.0.0.1:0")
		done <- code
	}()
	seg := c.QueryValue(t, "SELECT pg_walfile_name(pg_current_wal_flush_lsn())")
	tailDir := filepath.Join(arch, "wal", seg+".tail")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if files, _ := os.ReadDir(tailDir); len(files) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no increment in %s after 30 s; output:\n%s", tailDir, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a lag line or two
	m := regexp.MustCompile(`url=(http://\S+/metrics)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no metrics URL logged:\n%s", out.String())
	}
	metrics := scrape(t, m[1])
	if metrics["walship_tail_increments_total"] < 1 || metrics["walship_tail_shipped_lsn"] <= 0 {
		t.Errorf("metrics after an increment: increments %v, shipped LSN %v", metrics["walship_tail_increments_total"],
			metrics["walship_tail_shipped_lsn"])
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d after ctx ended, want 0; output:\n%s", code, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("walship tail did not stop within 10 s of the signal")
	}
	for _, want := range []string{"tail started", "tail lag", "lag_bytes=", "tail stopped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(filepath.Join(arch, "walship.json")); err != nil {
		t.Errorf("the tail did not record the archive identity: %v", err)
	}
}
