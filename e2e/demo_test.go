package e2e

import (
	"bytes"
	"fmt"
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
// prints, and against the files it leaves, and it must leave nothing running.
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
	for _, want := range []string{"base backup complete", "walship restore", "standby promoted on timeline 2", "demo: OK",
		"--wal-segsize=1", "default 16 MiB"} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// Not a terminal: no colour.
	if i := bytes.IndexByte(out, 0x1b); i >= 0 {
		t.Errorf("demo output to a pipe holds an escape sequence: %q", out[max(0, i-20):min(len(out), i+20)])
	}
	m := regexp.MustCompile(`acknowledged commits 1\.\.(\d+) \((\d+) missing`).FindStringSubmatch(text)
	if m == nil || m[2] != "0" {
		t.Fatalf("demo's promoted standby has a gap in its commits: %v", m)
	}
	have, _ := strconv.Atoi(m[1])
	got, err := parseDemoLoss(text)
	if err != nil {
		t.Fatalf("%v:\n%s", err, text)
	}
	if got.before && got.oldestMs > 500 {
		t.Errorf("demo lost a commit acknowledged %.1f ms before the kill, want at most 500", got.oldestMs)
	}
	if len(dir) == 2 {
		checkDemoLoss(t, dir[1], have, got)
		if ps, _ := exec.Command("pgrep", "-f", dir[1]).Output(); len(ps) > 0 {
			t.Errorf("demo left processes running: %s", ps)
		}
	} else {
		t.Errorf("demo does not say where its files are")
	}
}

// demoLoss is what the demo's "lost …" line says.
type demoLoss struct {
	n, after int     // commits lost, and those of them acknowledged after the kill
	oldestMs float64 // age at the kill of the oldest lost commit
	before   bool    // whether it was acknowledged before the kill
}

var demoLossLine = regexp.MustCompile(`(?m)^lost (no|\d+) acknowledged commits` +
	`(?: \((\d+) of them acknowledged after the kill was sent, in flight\))?` +
	`(?:; the oldest lost commit was acknowledged (\d+\.\d) ms ` +
	`(before the primary was killed|after the kill time was taken \(in flight when the kill was sent\)))?$`)

func parseDemoLoss(text string) (demoLoss, error) {
	m := demoLossLine.FindStringSubmatch(text)
	if m == nil {
		return demoLoss{}, fmt.Errorf("demo does not report its losses")
	}
	var l demoLoss
	if m[1] == "no" {
		if m[3] != "" {
			return l, fmt.Errorf("demo reports no loss, and the age of a lost commit: %q", m[0])
		}
		return l, nil
	}
	l.n, _ = strconv.Atoi(m[1])
	l.after, _ = strconv.Atoi(m[2])
	l.oldestMs, _ = strconv.ParseFloat(m[3], 64)
	l.before = strings.HasPrefix(m[4], "before")
	switch {
	case l.n == 0 || m[3] == "":
		return l, fmt.Errorf("demo reports its losses as %q: want \"lost no …\", or a count and an age", m[0])
	case !l.before && m[2] != "":
		return l, fmt.Errorf("demo counts commits acknowledged after the kill when all were: %q", m[0])
	case !l.before:
		l.after = l.n
	case l.after >= l.n:
		return l, fmt.Errorf("demo reports its oldest loss before the kill, and all losses after: %q", m[0])
	}
	return l, nil
}

// checkDemoLoss works out the loss from the demo's files: pgbench's log of
// acknowledged commits (one client: the k-th line is id k) and the time the
// kill was sent, and compares it with what the demo printed.
func checkDemoLoss(t *testing.T, dir string, have int, got demoLoss) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "kill-time"))
	if err != nil {
		t.Fatal(err)
	}
	killUs, err := epochMicros(strings.TrimSpace(string(b)), "")
	if err != nil {
		t.Fatalf("kill-time: %v", err)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "ackslog.*"))
	var acks []int64
	for _, name := range logs {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.Fields(line)
			if len(f) < 6 {
				t.Fatalf("%s: short line %q", name, line)
			}
			us, err := epochMicros(f[4], f[5])
			if err != nil {
				t.Fatalf("%s: %q: %v", name, line, err)
			}
			acks = append(acks, us)
		}
	}
	if len(acks) == 0 {
		t.Fatalf("no acknowledged commits in %s/ackslog.*", dir)
	}
	var want demoLoss
	for i, ack := range acks {
		if i+1 <= have {
			continue
		}
		age := float64(killUs-ack) / 1000
		if want.n == 0 || age > want.oldestMs {
			want.oldestMs = age
		}
		if age < 0 {
			want.after++
		}
		want.n++
	}
	want.before = want.n > 0 && want.oldestMs >= 0
	if want.oldestMs < 0 {
		want.oldestMs = -want.oldestMs
	}
	// The demo prints tenths of a millisecond, cut off.
	if got.n != want.n || got.after != want.after || got.before != want.before ||
		got.oldestMs > want.oldestMs || got.oldestMs < want.oldestMs-0.1 {
		t.Errorf("demo reports its loss as %+v; its files say %+v (%d acknowledged, standby has 1..%d)",
			got, want, len(acks), have)
	}
}

// epochMicros reads a time since the epoch as seconds with a fraction
// ("1700000000.123456789") or, when us is set, seconds and microseconds.
func epochMicros(sec, us string) (int64, error) {
	if us == "" {
		var frac string
		sec, frac, _ = strings.Cut(sec, ".")
		us = (frac + "000000")[:6]
	}
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return 0, err
	}
	u, err := strconv.ParseInt(us, 10, 64)
	if err != nil {
		return 0, err
	}
	return s*1_000_000 + u, nil
}

func TestDemoLossLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want demoLoss
		ok   bool
	}{
		{"lost no acknowledged commits", demoLoss{}, true},
		{"lost 3 acknowledged commits (2 of them acknowledged after the kill was sent, in flight); the oldest lost commit was acknowledged 50.0 ms before the primary was killed",
			demoLoss{n: 3, after: 2, oldestMs: 50, before: true}, true},
		{"lost 2 acknowledged commits; the oldest lost commit was acknowledged 98.7 ms before the primary was killed",
			demoLoss{n: 2, oldestMs: 98.7, before: true}, true},
		{"lost 15 acknowledged commits; the oldest lost commit was acknowledged 1.2 ms after the kill time was taken (in flight when the kill was sent)",
			demoLoss{n: 15, after: 15, oldestMs: 1.2}, true},
		{"lost 15 acknowledged commits; the oldest was acknowledged 0 ms before the kill", demoLoss{}, false},
		{"lost 0 acknowledged commits", demoLoss{}, false},
		{"lost 2 acknowledged commits", demoLoss{}, false},
		{"lost no acknowledged commits; the oldest lost commit was acknowledged 1.0 ms before the primary was killed", demoLoss{}, false},
		{"lost 2 acknowledged commits (2 of them acknowledged after the kill was sent, in flight); the oldest lost commit was acknowledged 1.0 ms before the primary was killed", demoLoss{}, false},
	} {
		got, err := parseDemoLoss("demo\n" + tc.line + "\ndemo: OK\n")
		if (err == nil) != tc.ok || tc.ok && got != tc.want {
			t.Errorf("parseDemoLoss(%q) = %+v, %v; want %+v, ok %v", tc.line, got, err, tc.want, tc.ok)
		}
	}
}
