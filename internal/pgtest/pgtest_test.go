package pgtest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var segmentName = regexp.MustCompile(`^[0-9A-F]{24}$`)

func TestArchiveAndCrash(t *testing.T) {
	t.Parallel()
	archive := TempDir(t)
	c := New(t, Options{
		InitdbArgs: []string{"--wal-segsize=1"},
		Conf: []string{
			"archive_mode = on",
			"archive_command = 'cp %p " + archive + "/%f'",
		},
	})
	assertOwned(t, c.DataDir)
	assertOwned(t, archive)

	c.Exec(t, "CREATE TABLE t (v int); INSERT INTO t VALUES (1), (2)")
	c.Exec(t, "INSERT INTO t VALUES ($1)", 3)
	if got, want := c.QueryValue(t, "SELECT sum(v) FROM t"), "6"; got != want {
		t.Fatalf("sum = %q, want %q", got, want)
	}
	if got, want := c.QueryValue(t, "SELECT $1::int > 0", 7), "t"; got != want {
		t.Fatalf("bool = %q, want %q", got, want)
	}

	seg := c.SwitchWAL(t)
	if !segmentName.MatchString(seg) {
		t.Fatalf("SwitchWAL = %q, want 24 hex digits", seg)
	}
	c.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", seg, 30*time.Second)
	fi, err := os.Stat(filepath.Join(archive, seg))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Size(), int64(1<<20); got != want {
		t.Fatalf("archived %s has %d bytes, want %d", seg, got, want)
	}
	if next := c.SwitchWAL(t); next <= seg {
		t.Fatalf("second SwitchWAL = %s, want after %s", next, seg)
	}

	if got, want := c.QueryValue(t, "SELECT current_user"), "postgres"; got != want {
		t.Fatalf("current_user = %q, want %q", got, want)
	}
	// The server runs as the cluster's user, and so do its commands.
	out, err := c.Command(t, "id", "-un").CombinedOutput()
	if got, want := strings.TrimSpace(string(out)), c.User; err != nil || got != want {
		t.Fatalf("id -un: %v, %q, want %q", err, got, want)
	}

	c.Kill(t)
	if portFree(c.Port) == false {
		t.Fatalf("port %d still taken after Kill", c.Port)
	}
	c.Start(t)
	if got, want := c.QueryValue(t, "SELECT sum(v) FROM t"), "6"; got != want {
		t.Fatalf("after crash recovery: sum = %q, want %q", got, want)
	}
	if log := c.LogTail(1000); !strings.Contains(log, "automatic recovery in progress") {
		t.Fatalf("no crash recovery in the server log:\n%s", log)
	}
	c.StopImmediate(t)
	c.Start(t)
	c.Restart(t)
	c.WaitFor(t, "SELECT count(*) FROM t", "3", 10*time.Second)
}

func TestStandby(t *testing.T) {
	t.Parallel()
	p := New(t, Options{InitdbArgs: []string{"--wal-segsize=1"}})
	p.Exec(t, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)")

	s := BaseBackup(t, p, Options{Conf: []string{"primary_conninfo = '" + p.ConnString() + "'"}})
	if s.Port == p.Port || s.SocketDir == p.SocketDir {
		t.Fatalf("standby shares port %d or socket directory %s with its primary", s.Port, s.SocketDir)
	}
	assertOwned(t, s.DataDir)
	s.WriteFile(t, "standby.signal", "")
	s.Start(t)
	if got, want := s.QueryValue(t, "SELECT pg_is_in_recovery()"), "t"; got != want {
		t.Fatalf("pg_is_in_recovery() = %q, want %q", got, want)
	}
	p.Exec(t, "INSERT INTO t VALUES (2)")
	s.WaitFor(t, "SELECT sum(v) FROM t", "3", 30*time.Second)
	if got, want := p.QueryValue(t, "SELECT count(*) FROM pg_stat_replication"), "1"; got != want {
		t.Fatalf("primary has %s WAL senders, want %s", got, want)
	}
}

func TestStartNoWait(t *testing.T) {
	t.Parallel()
	c := New(t, Options{NoStart: true})
	if _, err := os.Stat(filepath.Join(c.DataDir, "postmaster.pid")); err == nil {
		t.Fatal("NoStart cluster is running")
	}
	c.StartNoWait(t)
	c.WaitFor(t, "SELECT 1", "1", 30*time.Second)
	c.Stop(t)

	// A port taken while the server was down is replaced, also without
	// waiting.
	taken := c.Port
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(taken)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c.StartNoWait(t)
	if c.Port == taken {
		t.Fatalf("started on the taken port %d", taken)
	}
	c.WaitFor(t, "SHOW port", strconv.Itoa(c.Port), 30*time.Second)
}

func TestPortTaken(t *testing.T) {
	t.Parallel()
	c := New(t, Options{NoStart: true})
	taken := c.Port
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(taken)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c.Start(t)
	if c.Port == taken {
		t.Fatalf("started on the taken port %d", taken)
	}
	if got, want := c.QueryValue(t, "SHOW port"), strconv.Itoa(c.Port); got != want {
		t.Fatalf("server port = %s, want %s", got, want)
	}
}

func TestWaitForTimeout(t *testing.T) {
	t.Parallel()
	c := New(t, Options{})
	ft := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.WaitFor(ft, "SELECT 1", "2", 300*time.Millisecond)
	}()
	<-done
	if !strings.Contains(ft.msg, `last got "1"`) {
		t.Fatalf("WaitFor failure message %q does not show the last value", ft.msg)
	}
}

// TestWaitArchived: WaitArchived waits while the archiver fails on a
// segment and returns once it is archived, and takes segment names only.
func TestWaitArchived(t *testing.T) {
	t.Parallel()
	archive := TempDir(t)
	gate := filepath.Join(archive, "gate")
	c := New(t, Options{
		InitdbArgs: []string{"--wal-segsize=1"},
		Conf: []string{
			"archive_mode = on",
			"archive_command = 'test -f " + gate + " && cp %p " + archive + "/%f'",
		},
	})
	seg := c.SwitchWAL(t)
	fatal := func(f func(tb testing.TB)) string {
		ft := &fakeTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			f(ft)
		}()
		<-done
		return ft.msg
	}
	if msg := fatal(func(tb testing.TB) { c.WaitArchived(tb, seg, time.Second) }); !strings.Contains(msg, `last got "1"`) {
		t.Fatalf("WaitArchived(%s) with the archiver failing: %q, want a timeout that counts 1 file queued", seg, msg)
	}
	if msg := fatal(func(tb testing.TB) { c.WaitArchived(tb, seg+".00000028.backup", time.Second) }); !strings.Contains(msg, "not a segment name") {
		t.Fatalf("WaitArchived of a backup history name: %q, want it refused", msg)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	next := c.SwitchWAL(t) // wakes an archiver that gave up for a while
	c.WaitArchived(t, seg, 30*time.Second)
	if _, err := os.Stat(filepath.Join(archive, seg)); err != nil {
		t.Fatalf("WaitArchived(%s) returned: %v", seg, err)
	}
	c.WaitArchived(t, next, 30*time.Second)
}

func TestModuleRoot(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := moduleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := root, filepath.Dir(filepath.Dir(wd)); got != want {
		t.Fatalf("moduleRoot = %s, want %s", got, want)
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.HasPrefix(string(b), "module github.com/walship/walship\n") {
		t.Fatalf("go.mod of %s: %v, %.40q", root, err, b)
	}
	if _, err := moduleRoot("/"); err == nil {
		t.Fatal("moduleRoot(/) found a go.mod")
	}
}

func TestLogTail(t *testing.T) {
	c := &Cluster{LogFile: filepath.Join(t.TempDir(), "log")}
	if err := os.WriteFile(c.LogFile, []byte("a\nb\nc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := c.LogTail(2), "b\nc"; got != want {
		t.Fatalf("LogTail(2) = %q, want %q", got, want)
	}
	if got, want := c.LogTail(5), "a\nb\nc"; got != want {
		t.Fatalf("LogTail(5) = %q, want %q", got, want)
	}
}

// assertOwned checks that path belongs to the PostgreSQL user.
func assertOwned(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := int(fi.Sys().(*syscall.Stat_t).Uid), pgUser(t).uid; got != want {
		t.Fatalf("%s belongs to uid %d, want %d", path, got, want)
	}
}

// fakeTB records a fatal failure instead of failing the test.
type fakeTB struct {
	testing.TB
	msg string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
