package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// startTimeout bounds pg_ctl's waits; a test cluster starts in about a second.
	startTimeout = 60 * time.Second
	// goneTimeout bounds the wait for a killed cluster's processes and port.
	goneTimeout = 30 * time.Second
	// portConf is the file in the data directory that holds the settings that
	// differ between a cluster and its base backups: addresses and port.
	portConf = "pgtest.conf"
	// failLogLines is how much of the server log a failed test shows.
	failLogLines = 80
)

// Options configure a new cluster.
type Options struct {
	// InitdbArgs are extra initdb arguments, such as "--wal-segsize=1". They
	// follow pgtest's own arguments, so they override them. BaseBackup
	// ignores them.
	InitdbArgs []string
	// Conf holds lines appended to postgresql.conf after pgtest's settings,
	// such as "archive_mode = on", so they override them.
	Conf []string
	// NoStart leaves the new cluster stopped. BaseBackup never starts the
	// cluster it returns, whatever NoStart says.
	NoStart bool
}

// Cluster is a PostgreSQL cluster in a temporary directory, stopped and
// removed when the test that made it ends. Its methods fail the test on error.
type Cluster struct {
	// DataDir is the data directory.
	DataDir string
	// Port is the TCP port the server listens on at 127.0.0.1. Start picks a
	// new one when another process took it while the cluster was stopped.
	Port int
	// SocketDir is the directory of the server's Unix socket.
	SocketDir string
	// BinDir is the directory of the PostgreSQL programs.
	BinDir string
	// User is the operating system user the server and the commands made by
	// Command run as.
	User string
	// Home holds DataDir, SocketDir and LogFile, and is the HOME and working
	// directory of the programs the cluster runs.
	Home string
	// LogFile is the server log.
	LogFile string
}

// New makes a cluster with initdb, configures it for replication (wal_level
// replica, 5 WAL senders, replication connections from 127.0.0.1 trusted),
// appends opts.Conf to postgresql.conf and starts it unless opts.NoStart.
// The superuser is "postgres"; every local connection is trusted. Under
// go test -short New skips the test: -short means unit tests only.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c := newCluster(t)
	args := []string{"-D", c.DataDir, "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--locale=C", "--no-sync"}
	c.run(t, "initdb", append(args, opts.InitdbArgs...)...)
	c.appendFile(t, "pg_hba.conf", "host replication all 127.0.0.1/32 trust")
	c.AppendConf(t,
		"# Added by pgtest.",
		// Safe against the process crashes tests make (Kill); only an
		// operating system crash would lose data, and it saves much time.
		"fsync = off",
		"wal_level = replica",
		"max_wal_senders = 5",
		"logging_collector = off",
		"include = '"+portConf+"'",
	)
	c.writePortConf(t)
	c.AppendConf(t, opts.Conf...)
	if !opts.NoStart {
		c.Start(t)
	}
	return c
}

// BaseBackup copies primary into a new cluster with its own port and socket
// directory, appends opts.Conf to its postgresql.conf and returns it
// stopped. It takes the copy as pg_basebackup -X fetch -c fast does, over
// the replication protocol with walship's own client (internal/basebackup),
// so it needs no pg_basebackup and works on every major walship supports.
// The configuration files come from primary, its Options.Conf lines
// included, and postgresql.auto.conf is left as it is; a standby still
// needs its primary_conninfo or restore_command and a standby.signal or
// recovery.signal file (see WriteFile). A primary with tablespaces fails
// the test: the copy would need a place for them.
func BaseBackup(t testing.TB, primary *Cluster, opts Options) *Cluster {
	t.Helper()
	c := newCluster(t)
	// The WAL from the backup's start on must stay in pg_wal until the
	// server has sent it, and a checkpoint in between (another test's
	// backup on the same primary) could recycle it. A slot made
	// beforehand, reserving WAL at once, keeps it.
	slot := "pgtest_basebackup_" + strconv.Itoa(c.Port)
	primary.Exec(t, "SELECT pg_create_physical_replication_slot('"+slot+"', true)")
	err := copyCluster(primary.ConnString(), c.DataDir)
	primary.Exec(t, "SELECT pg_drop_replication_slot('"+slot+"')")
	if err != nil {
		t.Fatalf("base backup: %v\nprimary's server log:\n%s", err, primary.LogTail(failLogLines))
	}
	Chown(t, c.DataDir)
	c.writePortConf(t)
	c.AppendConf(t, opts.Conf...)
	return c
}

// newCluster makes the directories of a cluster and picks its port. Under
// go test -short, which runs unit tests only, it skips the test.
func newCluster(t testing.TB) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL; skipped with -short")
	}
	home := newDir(t, "pgtest-")
	c := &Cluster{
		DataDir:   filepath.Join(home, "data"),
		SocketDir: filepath.Join(home, "socket"),
		BinDir:    BinDir(t),
		User:      pgUser(t).name,
		Home:      home,
		LogFile:   filepath.Join(home, "server.log"),
		Port:      FreePort(t),
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log %s, last %d lines:\n%s", c.LogFile, failLogLines, c.LogTail(failLogLines))
		}
		if err := c.shutdown(t); err != nil {
			t.Errorf("stop cluster %s: %v", c.DataDir, err)
		}
		removeAll(t, home)
	})
	if err := os.Mkdir(c.SocketDir, 0o700); err != nil {
		t.Fatal(err)
	}
	Chown(t, c.SocketDir)
	return c
}

// AppendConf appends lines to postgresql.conf. A running server reads them
// on reload (SELECT pg_reload_conf()) or restart. A line that sets a
// parameter the server's major does not have (recovery_prefetch on 13 and
// 14; see pgver.HasSetting) is left out, so that one configuration serves
// every major: the server would refuse to start with it.
func (c *Cluster) AppendConf(t testing.TB, lines ...string) {
	t.Helper()
	major := Major(t)
	var keep []string
	for _, l := range lines {
		name, _, ok := strings.Cut(strings.TrimSpace(l), "=")
		if ok && !major.HasSetting(strings.TrimSpace(name)) {
			continue
		}
		keep = append(keep, l)
	}
	c.appendFile(t, "postgresql.conf", keep...)
}

// WriteFile writes a file, such as standby.signal, at name relative to the
// data directory, owned by the cluster's user.
func (c *Cluster) WriteFile(t testing.TB, name, content string) {
	t.Helper()
	path := filepath.Join(c.DataDir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	Chown(t, path)
}

func (c *Cluster) appendFile(t testing.TB, name string, lines ...string) {
	t.Helper()
	if len(lines) == 0 {
		return
	}
	f, err := os.OpenFile(filepath.Join(c.DataDir, name), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(strings.Join(lines, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// writePortConf (re)writes the settings that tie the cluster to its port.
// They live in their own included file so that a new port replaces the old
// one, and so that a base backup can get its own.
func (c *Cluster) writePortConf(t testing.TB) {
	t.Helper()
	c.WriteFile(t, portConf, fmt.Sprintf(
		"# Written by pgtest, included by postgresql.conf.\n"+
			"listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n",
		c.Port, c.SocketDir))
}

// Start starts the server and waits (pg_ctl -w) until it accepts
// connections, as a primary or as a hot standby. When another process took the
// port meanwhile, it retries on a new one.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	c.start(t, true)
}

// StartNoWait starts the server without waiting for it to accept
// connections: for a standby that cannot reach a consistent state yet, such as
// one whose restore_command waits for WAL the test has still to produce. It
// returns once the postmaster runs; WaitFor tells when it serves queries.
func (c *Cluster) StartNoWait(t testing.TB) {
	t.Helper()
	c.start(t, false)
}

func (c *Cluster) start(t testing.TB, wait bool) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		offset := fileSize(c.LogFile)
		args := []string{"start", "-D", c.DataDir, "-l", c.LogFile}
		if wait {
			args = append(args, "-w", "-t", strconv.Itoa(int(startTimeout.Seconds())))
		} else {
			args = append(args, "-W")
		}
		out, err := c.Command(t, "pg_ctl", args...).CombinedOutput()
		if err == nil && !wait {
			err = c.waitPostmaster(offset)
		}
		if err == nil {
			return
		}
		if attempt < 5 && bytes.Contains(readFrom(c.LogFile, offset), []byte("Address already in use")) {
			c.Port = FreePort(t)
			c.writePortConf(t)
			continue
		}
		t.Fatalf("start cluster %s: %v\n%s\nserver log:\n%s", c.DataDir, err, out, c.LogTail(failLogLines))
	}
}

// waitPostmaster waits until a postmaster started with pg_ctl -W has set up
// its sockets and shared memory, or has failed to, which it tells from the
// server log written since offset.
func (c *Cluster) waitPostmaster(offset int64) error {
	return poll(startTimeout, func() (bool, error) {
		if _, ok := c.runningPID(); !ok {
			// Not written yet, a stale file from a killed server, or a
			// postmaster that exited on an error.
			if log := readFrom(c.LogFile, offset); bytes.Contains(log, []byte("FATAL:")) ||
				bytes.Contains(log, []byte("database system is shut down")) {
				return false, errors.New("the postmaster exited")
			}
			return false, nil
		}
		// The status line follows the socket and shared memory lines.
		lines, err := c.pidFile()
		return err == nil && len(lines) >= 8, nil
	}, "postmaster.pid")
}

// Stop stops the server with a fast shutdown and waits until it is down.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	c.stop(t, "fast")
}

// StopImmediate stops the server with an immediate shutdown, which needs
// crash recovery at the next start, and waits until it is down.
func (c *Cluster) StopImmediate(t testing.TB) {
	t.Helper()
	c.stop(t, "immediate")
}

func (c *Cluster) stop(t testing.TB, mode string) {
	t.Helper()
	out, err := c.Command(t, "pg_ctl", "stop", "-D", c.DataDir, "-m", mode,
		"-w", "-t", strconv.Itoa(int(startTimeout.Seconds()))).CombinedOutput()
	if err != nil {
		t.Fatalf("stop (%s) cluster %s: %v\n%s\nserver log:\n%s", mode, c.DataDir, err, out, c.LogTail(failLogLines))
	}
}

// Restart stops the server with a fast shutdown and starts it again.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.Stop(t)
	c.Start(t)
}

// Kill crashes the server: it sends SIGKILL to the postmaster and waits until
// the postmaster, its children (which exit on their own when they notice the
// postmaster is gone) and its port are gone, so that Start can follow.
func (c *Cluster) Kill(t testing.TB) {
	t.Helper()
	pid := c.postmasterPID(t)
	// Stopped, the postmaster cannot fork a child we would miss.
	if err := signal(pid, sigStop); err != nil {
		t.Fatalf("kill postmaster %d: %v", pid, err)
	}
	children := childrenOf(pid)
	if err := signal(pid, sigKill); err != nil {
		t.Fatalf("kill postmaster %d: %v", pid, err)
	}
	pids := append([]int{pid}, children...)
	err := poll(goneTimeout, func() (bool, error) {
		for _, p := range pids {
			if alive(p) {
				return false, nil
			}
		}
		return true, nil
	}, "the killed server's processes to exit")
	if err != nil {
		var left []string
		for _, p := range pids {
			if alive(p) {
				left = append(left, fmt.Sprintf("%d (%s)", p, cmdline(p)))
			}
		}
		t.Fatalf("%v; still running: %s", err, strings.Join(left, ", "))
	}
	if err := poll(goneTimeout, func() (bool, error) { return portFree(c.Port), nil }, "the port to be free"); err != nil {
		t.Fatalf("%v: %d", err, c.Port)
	}
	// Until init reaps the dead postmaster, its pid answers kill(pid, 0),
	// and a new postmaster takes the lock files for a live one's.
	if err := poll(goneTimeout, func() (bool, error) { return !exists(pid), nil }, "init to reap the killed postmaster"); err != nil {
		t.Fatalf("%v (pid %d): run the tests under an init that reaps orphans, such as docker run --init", err, pid)
	}
}

// postmasterPID returns the pid of the running postmaster.
func (c *Cluster) postmasterPID(t testing.TB) int {
	t.Helper()
	pid, ok := c.runningPID()
	if !ok {
		t.Fatalf("cluster %s is not running", c.DataDir)
	}
	return pid
}

// runningPID returns the pid in postmaster.pid when it names a live
// postgres process of BinDir. A stale file's pid may belong to another
// process by now, which must not be signalled.
func (c *Cluster) runningPID() (int, bool) {
	lines, err := c.pidFile()
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(lines[0])
	if err != nil || !alive(pid) {
		return 0, false
	}
	exe, err1 := os.Stat(fmt.Sprintf("/proc/%d/exe", pid))
	want, err2 := os.Stat(filepath.Join(c.BinDir, "postgres"))
	if err1 == nil && err2 == nil && !os.SameFile(exe, want) {
		return 0, false
	}
	return pid, true
}

func (c *Cluster) pidFile() ([]string, error) {
	b, err := os.ReadFile(filepath.Join(c.DataDir, "postmaster.pid"))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n"), nil
}

// shutdown stops a running server at cleanup, without failing on a server
// that is not running.
func (c *Cluster) shutdown(t testing.TB) error {
	pid, ok := c.runningPID()
	if !ok {
		return nil
	}
	cmd := command(t, c.Home, c.env(), "pg_ctl", "stop", "-D", c.DataDir, "-m", "immediate",
		"-w", "-t", strconv.Itoa(int(startTimeout.Seconds())))
	out, err := cmd.CombinedOutput()
	if err != nil {
		_ = signal(pid, sigKill)
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// LogTail returns the last n lines of the server log.
func (c *Cluster) LogTail(n int) string {
	b, err := os.ReadFile(c.LogFile)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Command returns a command, not yet started, that runs name as the cluster's
// user, with PGHOST, PGPORT, PGUSER, PGDATABASE and PGDATA set for this
// cluster. A bare name of a program in BinDir (psql, pg_controldata…) runs
// from there; any other name is looked up in PATH.
func (c *Cluster) Command(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	return command(t, c.Home, c.env(), name, args...)
}

func (c *Cluster) env() []string {
	return []string{
		"PGHOST=127.0.0.1",
		"PGPORT=" + strconv.Itoa(c.Port),
		"PGUSER=postgres",
		"PGDATABASE=postgres",
		"PGSSLMODE=disable",
		"PGDATA=" + c.DataDir,
	}
}

func (c *Cluster) run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := c.Command(t, name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that nobody listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// poll calls done until it reports true, with a growing interval, until
// timeout passes.
func poll(timeout time.Duration, done func() (bool, error), what string) error {
	deadline := time.Now().Add(timeout)
	interval := 10 * time.Millisecond
	for {
		ok, err := done()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %v for %s", timeout, what)
		}
		time.Sleep(interval)
		interval = min(2*interval, 200*time.Millisecond)
	}
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the contents of path from offset on.
func readFrom(path string, offset int64) []byte {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return nil
	}
	return b[offset:]
}
