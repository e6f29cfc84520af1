package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/internal/pgtest"
)

// warmPair is a primary archiving with walship push and a pg_standby-mode
// standby restoring with walship wait, as the README sets them up.
type warmPair struct {
	bin, arch, trigger string
	primary, standby   *pgtest.Cluster
}

func newWarmPair(t *testing.T) *warmPair {
	t.Helper()
	p := newWarmPairStopped(t, warmOptions{})
	p.standby.StartNoWait(t)
	p.standby.WaitFor(t, "SELECT pg_is_in_recovery()", "t", 60*time.Second)
	return p
}

// warmOptions vary a warm pair from the README's set-up.
type warmOptions struct {
	pushArgs string              // more arguments of walship push, such as "--compress none"
	restore  func(string) string // rewrites the standby's restore_command line
	prepare  func(arch string)   // runs on the empty archive before the primary starts
}

// newWarmPairStopped makes the pair of newWarmPair and leaves the standby
// stopped.
func newWarmPairStopped(t *testing.T, o warmOptions) *warmPair {
	t.Helper()
	p := &warmPair{bin: pgtest.Walship(t), arch: pgtest.TempDir(t)}
	p.trigger = filepath.Join(pgtest.TempDir(t), "walship.trigger")
	if o.prepare != nil {
		o.prepare(p.arch)
	}
	conf := pushConf(p.bin, p.arch)
	if o.pushArgs != "" {
		for i, l := range conf {
			conf[i] = strings.Replace(l, " push --archive", " push "+o.pushArgs+" --archive", 1)
		}
	}
	p.primary = pgtest.New(t, pgtest.Options{InitdbArgs: []string{"--wal-segsize=1"}, Conf: conf})
	p.primary.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	// The settings of contrib/postgresql/standby-wait.conf, as the README
	// says, with a short poll for a quick test.
	sconf := contribConf("standby-wait.conf", contribPaths(p.bin, p.arch, p.trigger))
	for i, l := range sconf {
		sconf[i] = strings.Replace(l, " wait --archive", " wait --poll 100ms --archive", 1)
		if o.restore != nil && strings.HasPrefix(l, "restore_command") {
			sconf[i] = o.restore(sconf[i])
		}
	}
	p.standby = pgtest.BaseBackup(t, p.primary, pgtest.Options{Conf: sconf})
	p.standby.WriteFile(t, "recovery.signal", "")
	// The backup ends in a segment the primary has not archived yet.
	p.primary.SwitchWAL(t)
	return p
}

// insert adds rows [from, to) on the primary and archives them.
func (p *warmPair) insert(t *testing.T, from, to int) string {
	t.Helper()
	p.primary.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series($1::int, $2::int - 1) g", from, to)
	seg := p.primary.SwitchWAL(t)
	p.primary.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", seg, 60*time.Second)
	return seg
}

func (p *warmPair) promote(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(p.bin, append([]string{"promote", "--trigger", p.trigger}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("walship promote: %v\n%s", err, out)
	}
	pgtest.Chown(t, p.trigger)
}

func TestWarmStandbySmartFailover(t *testing.T) {
	p := newWarmPair(t)
	p.insert(t, 0, 1000)
	p.standby.WaitFor(t, "SELECT count(*) FROM t", "1000", 60*time.Second)
	if got := p.standby.QueryValue(t, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("standby pg_is_in_recovery = %s, want true", got)
	}

	// More rows, archived while the standby is stopped, so segments are
	// outstanding when the smart trigger arrives: it must apply them all.
	p.standby.Stop(t)
	p.insert(t, 1000, 2000)
	p.insert(t, 2000, 3000)
	p.promote(t)
	p.standby.Start(t)
	p.standby.WaitFor(t, "SELECT pg_is_in_recovery()", "f", 60*time.Second)
	if got := p.standby.QueryValue(t, "SELECT count(*) FROM t"); got != "3000" {
		t.Errorf("promoted standby has %s rows, want all 3000 archived", got)
	}
	tli := p.standby.QueryValue(t, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")
	if tli != "00000002" {
		t.Errorf("promoted standby is on timeline %s, want 00000002", tli)
	}
	if _, err := os.Stat(p.trigger); !os.IsNotExist(err) {
		t.Errorf("trigger file still there after promotion (recovery_end_command): %v", err)
	}
	// The new primary archives its history file into the same archive.
	p.standby.Exec(t, "INSERT INTO t VALUES (-1, 'after promotion')")
	seg := p.standby.SwitchWAL(t)
	p.standby.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", seg, 60*time.Second)
	if got := p.standby.QueryValue(t, "SELECT failed_count FROM pg_stat_archiver"); got != "0" {
		t.Errorf("promoted standby's archiver failed %s times\n%s", got, p.standby.LogTail(40))
	}
	st := openLocal(t, p.arch)
	if string(archivedWAL(t, st, "00000002.history")) == "" {
		t.Error("00000002.history is empty in the archive")
	}
}

func TestWarmStandbyFastFailover(t *testing.T) {
	p := newWarmPair(t)
	p.insert(t, 0, 500)
	p.standby.WaitFor(t, "SELECT count(*) FROM t", "500", 60*time.Second)

	// A standby behind its archive: replay paused, two more segments
	// archived. A fast trigger must promote it without the second.
	p.standby.Exec(t, "SELECT pg_wal_replay_pause()")
	p.insert(t, 500, 1000)
	p.insert(t, 1000, 1500)
	p.promote(t, "--fast")
	p.standby.Exec(t, "SELECT pg_wal_replay_resume()")
	p.standby.WaitFor(t, "SELECT pg_is_in_recovery()", "f", 60*time.Second)
	got, err := strconv.Atoi(p.standby.QueryValue(t, "SELECT count(*) FROM t"))
	if err != nil {
		t.Fatal(err)
	}
	if got < 500 || got >= 1500 {
		t.Errorf("fast failover: promoted with %d rows, want the applied ones and not the last outstanding segment's (500 to 1499)", got)
	}
	t.Logf("fast failover promoted with %d of 1500 archived rows", got)
	if _, err := os.Stat(p.trigger); !os.IsNotExist(err) {
		t.Errorf("trigger file still there after promotion: %v", err)
	}
}

// While the archive is unreachable the standby keeps waiting; it neither
// promotes nor stops, and catches up when the archive returns.
func TestWarmStandbySurvivesArchiveOutage(t *testing.T) {
	p := newWarmPair(t)
	p.insert(t, 0, 100)
	p.standby.WaitFor(t, "SELECT count(*) FROM t", "100", 60*time.Second)

	hidden := p.arch + ".away"
	if err := os.Rename(p.arch, hidden); err != nil {
		t.Fatal(err)
	}
	// An empty mount point, which the primary's push cannot write either
	// (mount points belong to root).
	if err := os.Mkdir(p.arch, 0o555); err != nil {
		t.Fatal(err)
	}
	p.promote(t) // even a smart trigger must not end recovery on an outage
	time.Sleep(2 * time.Second)
	if got := p.standby.QueryValue(t, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("standby left recovery while the archive was away\n%s", p.standby.LogTail(30))
	}
	if err := os.Remove(p.arch); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(hidden, p.arch); err != nil {
		t.Fatal(err)
	}
	// Back: the smart trigger now ends recovery with everything archived.
	p.standby.WaitFor(t, "SELECT pg_is_in_recovery()", "f", 60*time.Second)
	if got := p.standby.QueryValue(t, "SELECT count(*) FROM t"); got != "100" {
		t.Errorf("promoted standby has %s rows, want 100", got)
	}
}

// A primary pushing with --compress s2: its segments are stored as .s2 and
// the standby replays them through wait; a byte changed in one is refused
// by fetch (exit > 125, nothing written), and the promoted standby's
// history file is stored as zstd.
func TestWarmStandbyS2(t *testing.T) {
	p := newWarmPairStopped(t, warmOptions{pushArgs: "--compress s2"})
	p.standby.StartNoWait(t)
	p.standby.WaitFor(t, "SELECT pg_is_in_recovery()", "t", 60*time.Second)
	p.insert(t, 0, 2000)
	seg := p.insert(t, 2000, 4000)
	p.standby.WaitFor(t, "SELECT count(*) FROM t", "4000", 60*time.Second)

	st := openLocal(t, p.arch)
	fis, err := st.List(context.Background(), archive.WALDir)
	if err != nil {
		t.Fatal(err)
	}
	var s2, other []string
	for _, fi := range fis {
		if strings.HasSuffix(fi.Name, ".s2") {
			s2 = append(s2, fi.Name)
		} else {
			other = append(other, fi.Name)
		}
	}
	if len(s2) < 2 || !slices.Contains(s2, seg+".s2") {
		t.Fatalf("wal/ holds .s2 files %v and others %v; want every segment as .s2, %s among them", s2, other, seg)
	}

	// A byte of a chunk's data changed: fetch refuses the segment.
	path := filepath.Join(p.arch, archive.WALPath(seg, ".s2"))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.MkdirAll(filepath.Join(bad, archive.WALDir), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"walship.json"} {
		c, err := os.ReadFile(filepath.Join(p.arch, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bad, f), c, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(filepath.Join(bad, archive.WALPath(seg, ".s2")), b, 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	cmd := exec.Command(p.bin, "fetch", "--archive", bad, seg, dest)
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code <= 125 {
		t.Errorf("fetch of a damaged .s2 segment: exit %d, want > 125\n%s", code, out)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Errorf("fetch wrote the damaged segment to %s", dest)
	}

	p.promote(t)
	p.standby.WaitFor(t, "SELECT pg_is_in_recovery()", "f", 60*time.Second)
	p.standby.WaitFor(t, "SELECT last_archived_wal IS NOT NULL FROM pg_stat_archiver", "t", 60*time.Second)
	if _, suffix, err := archive.StatWAL(context.Background(), st, "00000002.history"); err != nil || suffix != ".zst" {
		t.Errorf("00000002.history: suffix %q, %v; want .zst", suffix, err)
	}
}
