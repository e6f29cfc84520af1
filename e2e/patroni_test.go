package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"

	"github.com/walship/walship/internal/pgtest"
)

// The Patroni cluster of these tests runs from contrib/patroni/patroni.yml
// and contrib/patroni/walship-restore.sh as they are, with their paths
// replaced by the test's, merged with the settings that differ from node to
// node. Patroni and etcd are Debian's (patroni, etcd-server): .ci/run
// installs them, and CI fails without them.

const (
	recipeYAML   = "../contrib/patroni/patroni.yml"
	recipeScript = "../contrib/patroni/walship-restore.sh"
	// What the recipe calls the walship binary, its wrapper and the archive.
	recipeBin     = "/usr/local/bin/walship"
	recipeWrapper = "/usr/local/bin/walship-restore.sh"
	recipeArchive = "/srv/walship/main"
)

// patroniSetup is an etcd on loopback and the walship archive every
// cluster of the test archives into.
type patroniSetup struct {
	bin, arch, script string
	etcd              string // host:port of etcd's client API
	recipe            string // patroni.yml, with the test's paths
}

func newPatroniSetup(t *testing.T) *patroniSetup {
	t.Helper()
	needProgram(t, "patroni", "apt-get install patroni")
	needProgram(t, "patronictl", "apt-get install patroni")
	etcd := needProgram(t, "etcd", "apt-get install etcd-server")
	bin := pgtest.Walship(t)
	s := &patroniSetup{bin: bin, arch: pgtest.TempDir(t)}

	// The wrapper as contrib ships it, where the PostgreSQL user can run it.
	tools := pgtest.TempDir(t)
	b, err := os.ReadFile(recipeScript)
	if err != nil {
		t.Fatal(err)
	}
	s.script = filepath.Join(tools, "walship-restore.sh")
	if err := os.WriteFile(s.script, b, 0o755); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, s.script)
	y, err := os.ReadFile(recipeYAML)
	if err != nil {
		t.Fatal(err)
	}
	s.recipe = strings.NewReplacer(recipeWrapper, s.script, recipeBin, bin, recipeArchive, s.arch).Replace(string(y))
	for _, p := range []string{recipeWrapper, recipeBin, recipeArchive} {
		if strings.Contains(s.recipe, p) {
			t.Fatalf("patroni.yml still names %s after the test's paths replaced it", p)
		}
	}

	// etcd, as root: it does not mind.
	client, peer := pgtest.FreePort(t), pgtest.FreePort(t)
	s.etcd = fmt.Sprintf("127.0.0.1:%d", client)
	dir := t.TempDir()
	cmd := exec.Command(etcd, "--name", "walship-test", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", "http://"+s.etcd, "--advertise-client-urls", "http://"+s.etcd,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
		"--initial-cluster", fmt.Sprintf("walship-test=http://127.0.0.1:%d", peer))
	logf := startLogged(t, cmd, filepath.Join(dir, "etcd.log"))
	waitUntil(t, 30*time.Second, "etcd to answer", func() (bool, string) {
		resp, err := http.Get("http://" + s.etcd + "/health")
		if err != nil {
			return false, err.Error() + "\n" + tailFile(logf, 20)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && strings.Contains(string(body), "true"), string(body)
	})
	return s
}

// needProgram finds a program on PATH. Without it the test fails in CI and
// is skipped elsewhere.
func needProgram(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found: %s (.ci/run does)", name, install)
	}
	t.Skipf("%s not found: %s to run this test (in CI it fails instead)", name, install)
	return ""
}

// startLogged starts cmd with its output in logPath, and kills it when the
// test ends.
func startLogged(t *testing.T, cmd *exec.Cmd, logPath string) string {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	return logPath
}

// waitUntil polls done every 200ms until it says true, and fails the test
// with its last words after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, done func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := done()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s; last: %s", timeout, what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// patroniNode is one Patroni-managed PostgreSQL server.
type patroniNode struct {
	s               *patroniSetup
	scope, name     string
	home, conf, log string
	pgPort, api     int
	cmd             *exec.Cmd
	mu              sync.Mutex
	stopped         chan struct{}
	pg              *pgtest.Cluster // for its address only: Patroni runs the server
}

// node makes a node of cluster scope; bootstrap is the bootstrap section's
// walship command to use instead of the recipe's (a target added), or
// "initdb" for a cluster made by initdb.
func (s *patroniSetup) node(t *testing.T, scope, name, bootstrap string) *patroniNode {
	t.Helper()
	home := pgtest.TempDir(t)
	n := &patroniNode{s: s, scope: scope, name: name, home: home, conf: filepath.Join(home, "patroni.yml"),
		log: filepath.Join(home, "patroni.log"), pgPort: pgtest.FreePort(t), api: pgtest.FreePort(t)}
	n.pg = &pgtest.Cluster{DataDir: filepath.Join(home, "data"), Port: n.pgPort}

	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(s.recipe), &cfg); err != nil {
		t.Fatalf("contrib/patroni/patroni.yml: %v", err)
	}
	local := map[string]any{
		"scope":     scope,
		"namespace": "/walship-test/",
		"name":      name,
		"log":       map[string]any{"level": "INFO"},
		"restapi": map[string]any{
			"listen":          fmt.Sprintf("127.0.0.1:%d", n.api),
			"connect_address": fmt.Sprintf("127.0.0.1:%d", n.api),
		},
		"etcd3": map[string]any{"hosts": s.etcd},
		"bootstrap": map[string]any{
			"dcs": map[string]any{
				"ttl": 10, "loop_wait": 1, "retry_timeout": 3, "maximum_lag_on_failover": 64 << 20,
			},
			"initdb": []any{"wal-segsize=1", map[string]any{"encoding": "UTF8"}},
		},
		"postgresql": map[string]any{
			"listen":          fmt.Sprintf("127.0.0.1:%d", n.pgPort),
			"connect_address": fmt.Sprintf("127.0.0.1:%d", n.pgPort),
			"data_dir":        n.pg.DataDir,
			"bin_dir":         pgtest.BinDir(t),
			"pgpass":          filepath.Join(home, "pgpass"),
			"authentication": map[string]any{
				"superuser":   map[string]any{"username": "postgres", "password": "walship-test"},
				"replication": map[string]any{"username": "replicator", "password": "walship-test"},
			},
			"pg_hba": []any{
				"local all all trust",
				"host all all 127.0.0.1/32 trust",
				"host replication all 127.0.0.1/32 trust",
			},
			"parameters": map[string]any{
				"unix_socket_directories": home,
				// The recipe's 60s, shortened so that the test's backup
				// from a standby waits seconds, not a minute.
				"archive_timeout": "3s",
				"wal_keep_size":   "64MB",
			},
		},
	}
	if bootstrap == "initdb" {
		local["bootstrap"].(map[string]any)["method"] = "initdb"
	} else if bootstrap != "" {
		local["bootstrap"].(map[string]any)["walship"] = map[string]any{"command": bootstrap}
	}
	merge(cfg, local)
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.conf, out, 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, n.conf)
	n.start(t)
	return n
}

// merge copies src into dst, merging maps key by key.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			if dv, ok := dst[k].(map[string]any); ok {
				merge(dv, sv)
				continue
			}
			dst[k] = maps.Clone(sv)
			continue
		}
		dst[k] = v
	}
}

// start starts Patroni on the node.
func (n *patroniNode) start(t *testing.T) {
	t.Helper()
	cmd := pgtest.UserCommand(t, n.home, []string{"WALSHIP_ARCHIVE=" + n.s.arch, "WALSHIP_BIN=" + n.s.bin},
		"patroni", n.conf)
	f, err := os.OpenFile(n.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.cmd, n.stopped = cmd, make(chan struct{})
	stopped := n.stopped
	go func() { cmd.Wait(); f.Close(); close(stopped) }()
	t.Cleanup(func() { n.kill() })
}

// stop stops Patroni, which stops PostgreSQL, as systemctl stop patroni does.
func (n *patroniNode) stop(t *testing.T) {
	t.Helper()
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.stopped:
	case <-time.After(90 * time.Second):
		t.Fatalf("patroni %s did not stop in 90s:\n%s", n.name, tailFile(n.log, 40))
	}
	n.waitPostgresGone(t)
}

// crash kills Patroni and then the postmaster with SIGKILL: the node dies
// as a machine does.
func (n *patroniNode) crash(t *testing.T) {
	t.Helper()
	pid := n.postmasterPID()
	n.kill()
	if pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	n.waitPostgresGone(t)
}

func (n *patroniNode) kill() {
	if n.cmd != nil && n.cmd.Process != nil {
		syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.stopped
	}
	if pid := n.postmasterPID(); pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func (n *patroniNode) postmasterPID() int {
	b, err := os.ReadFile(filepath.Join(n.pg.DataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	return pid
}

func (n *patroniNode) waitPostgresGone(t *testing.T) {
	t.Helper()
	waitUntil(t, 60*time.Second, n.name+"'s PostgreSQL to stop", func() (bool, string) {
		_, err := n.query("SELECT 1")
		return err != nil, "still answers"
	})
}

// status is what Patroni's REST API says of its node.
type patroniStatus struct {
	State    string `json:"state"`
	Role     string `json:"role"`
	Timeline int    `json:"timeline"`
}

func (n *patroniNode) status() (patroniStatus, error) {
	var st patroniStatus
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/patroni", n.api))
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// waitRole waits until Patroni runs the node's server in role ("primary"
// or "replica"), and returns its timeline.
func (n *patroniNode) waitRole(t *testing.T, role string, timeout time.Duration) int {
	t.Helper()
	var st patroniStatus
	deadline := time.Now().Add(timeout)
	for {
		var err error
		st, err = n.status()
		r := st.Role
		if r == "master" {
			r = "primary"
		}
		if err == nil && st.State == "running" && r == role {
			if _, qerr := n.query("SELECT 1"); qerr == nil {
				return st.Timeline
			}
		}
		exited := false
		select {
		case <-n.stopped:
			exited = true
		default:
		}
		if exited || time.Now().After(deadline) {
			t.Fatalf("%s/%s: not a running %s after %v (%+v, %v; Patroni exited: %v); Patroni's log:\n%s",
				n.scope, n.name, role, timeout, st, err, exited, tailFile(n.log, 60))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// waitBootstrapped waits until Patroni has made the node the leader of a
// new cluster, its post-bootstrap done (for a cluster restored by walship,
// that restarts the server), and returns its timeline.
func (n *patroniNode) waitBootstrapped(t *testing.T, timeout time.Duration) int {
	t.Helper()
	waitUntil(t, timeout, n.scope+"/"+n.name+" to initialize a new cluster", func() (bool, string) {
		log := tailFile(n.log, 5000)
		select {
		case <-n.stopped:
			t.Fatalf("%s/%s: Patroni exited while bootstrapping:\n%s", n.scope, n.name, tailFile(n.log, 60))
		default:
		}
		return strings.Contains(log, "initialized a new cluster"), tailFile(n.log, 30)
	})
	return n.waitRole(t, "primary", timeout)
}

// query runs sql on the node's server and returns the first column of the
// first row in text form ("" without rows).
func (n *patroniNode) query(sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, n.pg.ConnString()+" connect_timeout=5")
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	res, err := conn.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		return "", err
	}
	last := res[len(res)-1]
	if len(last.Rows) == 0 || len(last.Rows[0]) == 0 {
		return "", nil
	}
	return string(last.Rows[0][0]), nil
}

// q is query, failing the test on error.
func (n *patroniNode) q(t *testing.T, sql string) string {
	t.Helper()
	v, err := n.query(sql)
	if err != nil {
		t.Fatalf("%s/%s: %s: %v", n.scope, n.name, sql, err)
	}
	return v
}

// waitQuery waits until sql gives want on the node.
func (n *patroniNode) waitQuery(t *testing.T, sql, want string, timeout time.Duration) {
	t.Helper()
	waitUntil(t, timeout, fmt.Sprintf("%s/%s: %s = %s", n.scope, n.name, sql, want), func() (bool, string) {
		v, err := n.query(sql)
		if err != nil {
			return false, err.Error()
		}
		return v == want, v
	})
}

// switchWAL switches WAL on the node, a primary, and waits until the
// segment it ended is archived: everything committed before is then in
// the archive.
func (n *patroniNode) switchWAL(t *testing.T) string {
	t.Helper()
	seg := n.q(t, "SELECT pg_walfile_name(pg_switch_wal())")
	// As pgtest.WaitArchived: nothing queued at or before seg (a history
	// file archived after it has a lower name than seg).
	n.waitQuery(t, pgtest.QueuedThroughSQL(seg), "0", time.Minute)
	return seg
}

// patronictl runs patronictl against the node's cluster.
func (n *patroniNode) patronictl(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("patronictl", append([]string{"-c", n.conf}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("patronictl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// walship runs walship as the PostgreSQL user, so that what it writes into
// the archive is readable by the nodes' walship fetch and restore.
func (s *patroniSetup) walship(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := pgtest.UserCommand(t, s.arch, nil, s.bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// backupJSON runs walship backup --json against the node and returns the
// backup's id ("" when it took none) and what it printed.
func (s *patroniSetup) backup(t *testing.T, n *patroniNode, args ...string) (string, string) {
	t.Helper()
	out, errOut, err := s.walship(t, append([]string{"backup", "--archive", s.arch, "--dsn", n.pg.ConnString(),
		"--fast-checkpoint", "--json", "--wal-timeout", "1m"}, args...)...)
	if err != nil {
		t.Fatalf("walship backup of %s/%s: %v\n%s%s", n.scope, n.name, err, out, errOut)
	}
	var m backupMeta
	if json.Unmarshal([]byte(out), &m) != nil {
		return "", out + errOut
	}
	return m.ID, out + errOut
}

// rowsSummary is what the tests compare of table t: its rows' count, sum,
// smallest and largest id.
const rowsSummary = "SELECT count(*) || ' ' || coalesce(sum(id), 0) || ' ' || coalesce(min(id), 0) || '-' || coalesce(max(id), 0) FROM t"

// summary is rowsSummary of the ids from lo to hi, in ranges.
func summary(ranges ...[2]int) string {
	var count, sum int
	lo, hi := 0, 0
	for i, r := range ranges {
		for id := r[0]; id <= r[1]; id++ {
			count++
			sum += id
		}
		if i == 0 {
			lo = r[0]
		}
		hi = max(hi, r[1])
	}
	return fmt.Sprintf("%d %d %d-%d", count, sum, lo, hi)
}

// commitTime commits rows lo to hi on n and returns a time after their
// commit and before the next one, for recovery_target_time.
func commitTime(t *testing.T, n *patroniNode, lo, hi int) string {
	t.Helper()
	n.q(t, fmt.Sprintf("INSERT INTO t SELECT generate_series(%d, %d)", lo, hi))
	time.Sleep(50 * time.Millisecond)
	ts := n.q(t, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
	time.Sleep(50 * time.Millisecond)
	return ts
}

// TestPatroni runs Patroni clusters from contrib/patroni as an operator
// would: a cluster of two archiving into walship, its replica made by the
// walship replica method; a point-in-time recovery into a new cluster,
// which comes up as leader on a new timeline and archives onward, while
// the old cluster, not yet fenced, is warned of; a replica of the new
// cluster, which follows its timeline; a failover by kill -9 to timeline
// 3, a plain restart of the promoted former replica, and a point-in-time
// recovery across both timeline switches, from a backup on timeline 1.
func TestPatroni(t *testing.T) {
	s := newPatroniSetup(t)

	// Cluster alpha, made by initdb: a leader, a backup of it, a replica
	// made from that backup by the walship method.
	a1 := s.node(t, "alpha", "a1", "initdb")
	if tl := a1.waitBootstrapped(t, 2*time.Minute); tl != 1 {
		t.Fatalf("alpha's leader on timeline %d, want 1", tl)
	}
	a1.q(t, "CREATE TABLE t (id int PRIMARY KEY)")
	a1.q(t, "INSERT INTO t SELECT generate_series(1, 1000)")
	if id, out := s.backup(t, a1); id == "" {
		t.Fatalf("walship backup of alpha's leader took no backup:\n%s", out)
	}
	a1.q(t, "INSERT INTO t SELECT generate_series(1001, 1500)")
	a1.switchWAL(t)
	a2 := s.node(t, "alpha", "a2", "")
	a2.waitRole(t, "replica", 2*time.Minute)
	if !strings.Contains(tailFile(a2.log, 1000), "replica has been created using walship") {
		t.Errorf("a2 was not made by the walship replica method; Patroni's log:\n%s", tailFile(a2.log, 60))
	}
	a2.waitQuery(t, "SELECT status FROM pg_stat_wal_receiver", "streaming", time.Minute)
	a2.waitQuery(t, rowsSummary, summary([2]int{1, 1500}), time.Minute)

	// The backup timer runs on every node: on the replica it takes none,
	// unless told to; from the replica of an idle leader it waits for
	// archive_timeout, not for ever.
	if id, out := s.backup(t, a2); id != "" || !strings.Contains(out, "standby") {
		t.Errorf("walship backup on the replica took %q, want none, saying why:\n%s", id, out)
	}
	a2.waitQuery(t, "SELECT pg_last_wal_replay_lsn() >= '"+a1.q(t, "SELECT pg_current_wal_lsn()")+"'", "t", time.Minute)
	fromStandby, out := s.backup(t, a2, "--from-standby")
	if fromStandby == "" {
		t.Fatalf("walship backup --from-standby took no backup:\n%s", out)
	}

	target1 := commitTime(t, a1, 1501, 2000)
	a1.q(t, "INSERT INTO t SELECT generate_series(2001, 3000)")
	a1.switchWAL(t)

	// Cluster beta: a point-in-time recovery of alpha, the target given on
	// the bootstrap command line only, as patroni.yml says.
	b1 := s.node(t, "beta", "b1", s.script+" --target-time '"+target1+"'")
	if tl := b1.waitBootstrapped(t, 3*time.Minute); tl != 2 {
		t.Errorf("beta's leader on timeline %d, want 2", tl)
	}
	if got, want := b1.q(t, rowsSummary), summary([2]int{1, 2000}); got != want {
		t.Errorf("beta restored to %s: rows %s, want %s", target1, got, want)
	}
	for _, f := range []string{"recovery.signal", "standby.signal"} {
		if _, err := os.Stat(filepath.Join(b1.pg.DataDir, f)); err == nil {
			t.Errorf("beta's leader still has %s", f)
		}
	}
	// Patroni strips the recovery settings once its bootstrap is over,
	// which is after the server has promoted.
	if auto, _ := os.ReadFile(filepath.Join(b1.pg.DataDir, "postgresql.auto.conf")); bytes.Contains(auto, []byte("recovery_target_time")) {
		t.Errorf("beta's postgresql.auto.conf still holds the recovery target:\n%s", auto)
	}
	b1.q(t, "INSERT INTO t SELECT generate_series(10001, 10100)")
	if seg := b1.switchWAL(t); !strings.HasPrefix(seg, "00000002") {
		t.Errorf("beta archived %s, want a segment of timeline 2", seg)
	}

	// alpha was not fenced: its next segment is WAL of timeline 1 after
	// timeline 2 left it, and walship push says so in alpha's log.
	a1.q(t, "INSERT INTO t SELECT generate_series(3001, 3010)")
	a1.switchWAL(t)
	if !strings.Contains(tailFile(a1.log, 2000), "TWO SERVERS ARCHIVE DIVERGED TIMELINES") {
		t.Errorf("alpha archived WAL after the fork without a warning; its log:\n%s", tailFile(a1.log, 40))
	}
	// Fence alpha, as patroni.yml says.
	a2.stop(t)
	a1.stop(t)

	// beta's replica, by the walship method, follows timeline 2 and streams.
	b2 := s.node(t, "beta", "b2", "")
	b2.waitRole(t, "replica", 3*time.Minute)
	b2.waitQuery(t, "SELECT status FROM pg_stat_wal_receiver", "streaming", time.Minute)
	b2.waitQuery(t, rowsSummary, summary([2]int{1, 2000}, [2]int{10001, 10100}), time.Minute)

	// The leader's node dies; Patroni fails over to the replica, which
	// archives timeline 3.
	b1.crash(t)
	if tl := b2.waitRole(t, "primary", 2*time.Minute); tl != 3 {
		t.Errorf("after the failover beta's leader is on timeline %d, want 3", tl)
	}
	target2 := commitTime(t, b2, 20001, 20100)
	b2.q(t, "INSERT INTO t SELECT generate_series(20101, 20200)")
	if seg := b2.switchWAL(t); !strings.HasPrefix(seg, "00000003") {
		t.Errorf("beta's new leader archived %s, want a segment of timeline 3", seg)
	}
	// A plain restart of the promoted former replica: it stays the leader,
	// on timeline 3 (a recovery.signal left by its restore would make it
	// recover and pick timeline 4).
	started := b2.q(t, "SELECT pg_postmaster_start_time()")
	// Patroni refuses a restart while it is busy (just after a failover),
	// and patronictl says so on a zero exit: ask until it accepts.
	waitUntil(t, time.Minute, "patronictl restart to be accepted", func() (bool, string) {
		out := b2.patronictl(t, "restart", "beta", "b2", "--force")
		return strings.Contains(out, "Success: restart on member b2"), out
	})
	waitUntil(t, 2*time.Minute, "beta's leader to restart", func() (bool, string) {
		v, err := b2.query("SELECT pg_postmaster_start_time()")
		return err == nil && v != started, fmt.Sprint(v, err, "\n", tailFile(b2.log, 30))
	})
	if tl := b2.waitRole(t, "primary", 2*time.Minute); tl != 3 {
		t.Errorf("after a restart beta's leader is on timeline %d, want 3", tl)
	}
	if got := b2.q(t, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"); got != "00000003" {
		t.Errorf("after a restart beta's leader writes timeline %s, want 00000003", got)
	}
	b2.stop(t)

	// Cluster gamma: a point-in-time recovery across both switches. The
	// newest backup that reaches the target is alpha's, on timeline 1.
	c1 := s.node(t, "gamma", "c1", s.script+" --target-time '"+target2+"'")
	c1.waitBootstrapped(t, 3*time.Minute)
	if got, want := c1.q(t, rowsSummary), summary([2]int{1, 2000}, [2]int{10001, 10100}, [2]int{20001, 20100}); got != want {
		t.Errorf("gamma restored to %s: rows %s, want %s", target2, got, want)
	}
	if got := c1.q(t, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"); got != "00000004" {
		t.Errorf("gamma's leader writes timeline %s, want 00000004", got)
	}
	if !strings.Contains(tailFile(c1.log, 3000), fromStandby) {
		t.Logf("gamma's log does not name backup %s", fromStandby)
	}
}
