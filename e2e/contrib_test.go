package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/internal/pgtest"
)

// contribConf returns the settings of a contrib/postgresql snippet, with
// its example paths replaced by the test's, so that the snippets the README
// points at are the ones the tests run.
func contribConf(name string, repl map[string]string) []string {
	b, err := os.ReadFile(filepath.Join("..", "contrib", "postgresql", name))
	if err != nil {
		panic(err) // the snippets are part of the repository
	}
	text := string(b)
	for from, to := range repl {
		text = strings.ReplaceAll(text, from, to)
	}
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

func contribPaths(bin, arch, trigger string) map[string]string {
	return map[string]string{
		"/usr/local/bin/walship":              bin,
		"/srv/walship/main":                   arch,
		"/var/lib/postgresql/walship.trigger": trigger,
	}
}

// Patroni's custom bootstrap runs contrib/patroni/walship-restore.sh with
// --scope and --datadir; it restores the newest backup there.
func TestContribPatroniRestore(t *testing.T) {
	s := newBackupSetup(t)
	s.primary.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	s.primary.Exec(t, "INSERT INTO t VALUES (1), (2)")
	s.backup(t, s.primary)
	s.archiveAll(t)
	script, err := filepath.Abs("../contrib/patroni/walship-restore.sh")
	if err != nil {
		t.Fatal(err)
	}
	// patroni.yml keeps the recovery settings and recovery.signal that
	// walship restore writes (keep_existing_recovery_conf).
	c := pgtest.Adopt(t, pgtest.Options{Conf: []string{"archive_mode = off"}}, func(dir string) {
		cmd := exec.Command("sh", script, "--scope=demo", "--datadir="+dir)
		cmd.Env = append(os.Environ(), "WALSHIP_ARCHIVE="+s.arch, "WALSHIP_BIN="+s.bin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("walship-restore.sh: %v\n%s", err, out)
		}
	})
	c.Start(t)
	c.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
	if got := rows(t, c); got != "1,2" {
		t.Errorf("restored rows %q, want 1,2", got)
	}

	out, err := exec.Command("sh", script, "--scope=demo").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--datadir") {
		t.Errorf("walship-restore.sh without --datadir: %v %s; want an error naming --datadir", err, out)
	}
}

// contrib/postgresql/standby-streaming.conf: a standby.signal standby that
// falls back to the archive through walship fetch. With its primary
// unreachable it follows the archive alone, and walship promote --pg
// promotes it.
func TestContribStandbySignalFetch(t *testing.T) {
	bin := pgtest.Walship(t)
	arch := pgtest.TempDir(t)
	primary := pgtest.New(t, pgtest.Options{InitdbArgs: []string{"--wal-segsize=1"}, Conf: pushConf(bin, arch)})
	primary.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	conf := contribConf("standby-streaming.conf", contribPaths(bin, arch, ""))
	for i, l := range conf {
		if strings.HasPrefix(l, "primary_conninfo") {
			// Nothing listens there: only the archive feeds it.
			conf[i] = "primary_conninfo = 'host=127.0.0.1 port=1 user=postgres connect_timeout=1'"
		}
	}
	conf = append(conf, "wal_retrieve_retry_interval = '200ms'")
	standby := pgtest.BaseBackup(t, primary, pgtest.Options{Conf: conf})
	standby.WriteFile(t, "standby.signal", "")
	primary.SwitchWAL(t)
	standby.StartNoWait(t)
	standby.WaitFor(t, "SELECT pg_is_in_recovery()", "t", time.Minute)

	primary.Exec(t, "INSERT INTO t SELECT generate_series(1, 100)")
	seg := primary.SwitchWAL(t)
	primary.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", seg, time.Minute)
	standby.WaitFor(t, "SELECT count(*) FROM t", "100", time.Minute)

	out, err := exec.Command(bin, "promote", "--pg", standby.ConnString(), "--wait").CombinedOutput()
	if err != nil {
		t.Fatalf("walship promote --pg: %v\n%s", err, out)
	}
	standby.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
	if got := standby.QueryValue(t, "SELECT count(*) FROM t"); got != "100" {
		t.Errorf("promoted standby has %s rows, want 100", got)
	}
}

// WALSHIP_RESTORE_ARGS is split as a shell splits it: a target time with a
// space stays one argument (it was split, and walship refused the rest).
func TestContribPatroniRestoreArgs(t *testing.T) {
	script, err := filepath.Abs("../contrib/patroni/walship-restore.sh")
	if err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(t.TempDir(), "walship")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nfor a in \"$@\"; do printf '<%s>' \"$a\"; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", script, "--scope=demo", "--datadir=/srv/data")
	cmd.Env = append(os.Environ(), "WALSHIP_BIN="+fake, "WALSHIP_ARCHIVE=/srv/walship/demo",
		"WALSHIP_RESTORE_ARGS=--target-time '2026-12-01 18:40:50+00' --backup latest")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walship-restore.sh: %v\n%s", err, out)
	}
	want := "<restore><--archive></srv/walship/demo><--pgdata></srv/data><--force><--signal><recovery><--target-time><2026-12-01 18:40:50+00><--backup><latest><--target-action><promote>"
	if string(out) != want {
		t.Errorf("walship called with %s, want %s", out, want)
	}
	// As Patroni's replica method: no signal file, Patroni writes its own,
	// and the method's settings (no_leader, keep_data) are Patroni's.
	cmd = exec.Command("sh", script, "--scope=demo", "--datadir=/srv/data", "--role=replica", "--connstring=host=x",
		"--no_leader=True", "--keep_data=False")
	cmd.Env = append(os.Environ(), "WALSHIP_BIN="+fake, "WALSHIP_ARCHIVE=/srv/walship/demo")
	want = "<restore><--archive></srv/walship/demo><--pgdata></srv/data><--force><--signal><none>"
	if out, err = cmd.CombinedOutput(); err != nil || string(out) != want {
		t.Errorf("replica method: walship called with %s (%v), want %s", out, err, want)
	}
	// The target on the bootstrap command line of patroni.yml, as Patroni
	// splits it (shlex) and adds its own arguments after it; with
	// WALSHIP_RESTORE_ARGS, those come first.
	cmd = exec.Command("sh", script, "--target-time", "2026-12-01 18:40:50+00", "--target-action=pause", "--scope=demo", "--datadir=/srv/data")
	cmd.Env = append(os.Environ(), "WALSHIP_BIN="+fake, "WALSHIP_ARCHIVE=/srv/walship/demo", "WALSHIP_RESTORE_ARGS=--backup 'latest'")
	want = "<restore><--archive></srv/walship/demo><--pgdata></srv/data><--force><--signal><recovery><--backup><latest><--target-time><2026-12-01 18:40:50+00><--target-action=pause>"
	if out, err = cmd.CombinedOutput(); err != nil || string(out) != want {
		t.Errorf("bootstrap with a target: walship called with %s (%v), want %s", out, err, want)
	}
}
