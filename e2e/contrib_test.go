package e2e

import (
	"fmt"
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
	c := pgtest.Adopt(t, pgtest.Options{Conf: []string{
		"archive_mode = off",
		// What patroni.yml's recovery_conf makes Patroni write.
		fmt.Sprintf("restore_command = '%s fetch --archive %s %%f %%p'", s.bin, s.arch),
		"recovery_target_action = promote",
	}}, func(dir string) {
		cmd := exec.Command("sh", script, "--scope=demo", "--datadir="+dir)
		cmd.Env = append(os.Environ(), "WALSHIP_ARCHIVE="+s.arch, "WALSHIP_BIN="+s.bin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("walship-restore.sh: %v\n%s", err, out)
		}
	})
	c.WriteFile(t, "recovery.signal", "")
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
