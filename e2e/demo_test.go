package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/walship/walship/internal/pgtest"
)

// make demo's script, run end to end: its claims are checked from what it
// prints, and it must leave nothing running.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the demo runs PostgreSQL")
	}
	bin := pgtest.Walship(t)
	script, err := filepath.Abs("../contrib/demo/demo.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", script)
	cmd.Env = append(os.Environ(), "WALSHIP_BIN="+bin, "WALSHIP_PG_BINDIR="+pgtest.BinDir(t))
	out, err := cmd.CombinedOutput()
	text := string(out)
	dir := regexp.MustCompile(`its files are in (\S+)`).FindStringSubmatch(text)
	if len(dir) == 2 && strings.HasPrefix(dir[1], os.TempDir()) {
		t.Cleanup(func() { os.RemoveAll(dir[1]) })
	}
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, text)
	}
	for _, want := range []string{"base backup complete", "walship restore", "standby promoted on timeline 2", "demo: OK"} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	m := regexp.MustCompile(`lost (\d+) acknowledged commits; the oldest was acknowledged (\d+) ms before the kill`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("demo does not report its losses:\n%s", text)
	}
	if ms, _ := strconv.Atoi(m[2]); ms > 500 {
		t.Errorf("demo lost a commit acknowledged %d ms before the kill, want at most 500", ms)
	}
	m = regexp.MustCompile(`acknowledged commits 1\.\.(\d+) \((\d+) missing`).FindStringSubmatch(text)
	if m == nil || m[2] != "0" {
		t.Errorf("demo's promoted standby has a gap in its commits: %v", m)
	}
	if len(dir) == 2 {
		if ps, _ := exec.Command("pgrep", "-f", dir[1]).Output(); len(ps) > 0 {
			t.Errorf("demo left processes running: %s", ps)
		}
	}
}
