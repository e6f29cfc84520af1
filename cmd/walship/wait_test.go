package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walship/walship/internal/pgtest"
)

// archiveWith pushes segment 3 (1 MiB, system 42) into a new archive and
// returns the archive and the segment's name.
func archiveWith(t *testing.T) (arch, name string, seg []byte) {
	t.Helper()
	arch, src := t.TempDir(), t.TempDir()
	name = "000000010000000000000003"
	seg = segment(42, 3, 7)
	p := filepath.Join(src, name)
	if err := os.WriteFile(p, seg, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stderr := walshipRun(t, "push", "--archive", arch, p, name); code != 0 {
		t.Fatalf("push: exit %d, %s", code, stderr)
	}
	return arch, name, seg
}

func TestWaitExitCodes(t *testing.T) {
	arch, name, seg := archiveWith(t)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	if code, stderr := walshipRun(t, "wait", "--archive", arch, name, dest); code != 0 {
		t.Fatalf("wait for an archived segment: exit %d, %s", code, stderr)
	}
	if got, _ := os.ReadFile(dest); string(got) != string(seg) {
		t.Error("restored segment differs")
	}

	start := time.Now()
	if code, stderr := walshipRun(t, "wait", "--archive", arch, "00000002.history", dest); code != exitFailed {
		t.Errorf("missing history: exit %d, want 1; %s", code, stderr)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("missing history took %v, want an answer at once", d)
	}

	// Calling wait wrongly must stop recovery, not end it.
	for _, args := range [][]string{
		{"wait", "--archive", arch, name},
		{"wait", "--archive", arch, "pg_wal/RECOVERYXLOG", name}, // %p and %f swapped
		{"wait", "--archive", arch, "--no-such-flag", name, dest},
		{"wait", name, dest}, // no archive
		{"wait", "--archive", arch, "--cleanup", name, dest},
	} {
		if code, stderr := walshipRun(t, args...); code != exitAbortRec {
			t.Errorf("%v: exit %d, want %d; stderr %q", args, code, exitAbortRec, stderr)
		}
	}
}

func TestWaitCorruptSegmentStopsRecovery(t *testing.T) {
	arch, name, _ := archiveWith(t)
	p := filepath.Join(arch, "wal", name+".zst")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x55
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	code, stderr := walshipRun(t, "wait", "--archive", arch, name, dest)
	if code != exitAbortRec || !strings.Contains(stderr, "corrupt") {
		t.Errorf("corrupt segment: exit %d, stderr %q; want %d and a message saying it is corrupt", code, stderr, exitAbortRec)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("%%p was written (stat: %v)", err)
	}
}

// The standby's own system identifier (pg_control in the data directory)
// must match the archive's.
func TestWaitRefusesArchiveOfAnotherCluster(t *testing.T) {
	arch, name, _ := archiveWith(t)
	pgdata := t.TempDir()
	if err := os.MkdirAll(filepath.Join(pgdata, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	control := make([]byte, 8192)
	control[0] = 43 // system identifier 43, little-endian
	if err := os.WriteFile(filepath.Join(pgdata, "global", "pg_control"), control, 0o600); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(pgdata, "RECOVERYXLOG")
	code, stderr := walshipRun(t, "wait", "--archive", arch, "--pgdata", pgdata, name, dest)
	if code != exitAbortRec || !strings.Contains(stderr, "43") {
		t.Errorf("exit %d, stderr %q; want %d naming the standby's system identifier", code, stderr, exitAbortRec)
	}
}

func TestWaitFastTrigger(t *testing.T) {
	arch, _, _ := archiveWith(t)
	trig := filepath.Join(t.TempDir(), "trigger")
	if code, stderr := walshipRun(t, "promote", "--trigger", trig, "--fast"); code != 0 {
		t.Fatalf("promote: exit %d, %s", code, stderr)
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	if code, stderr := walshipRun(t, "wait", "--archive", arch, "--trigger", trig, "000000010000000000000004", dest); code != exitFailed {
		t.Errorf("fast trigger: exit %d, want 1; %s", code, stderr)
	}
	if b, _ := os.ReadFile(trig); strings.TrimSpace(string(b)) != "smart" {
		t.Errorf("trigger after a fast failover holds %q, want smart", b)
	}
}

// SIGUSR1 is pg_standby's fast failover, with or without a trigger file.
func TestWaitSIGUSR1IsFastFailover(t *testing.T) {
	bin := pgtest.Walship(t)
	arch, _, _ := archiveWith(t)
	for _, extra := range [][]string{nil, {"--trigger", filepath.Join(t.TempDir(), "trigger")}} {
		args := append([]string{"wait", "--archive", arch}, extra...)
		cmd := exec.Command(bin, append(args, "000000010000000000000009", filepath.Join(t.TempDir(), "RECOVERYXLOG"))...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Fatalf("wait %v returned before the signal: %v", extra, err)
		case <-time.After(500 * time.Millisecond):
		}
		if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
			if code := cmd.ProcessState.ExitCode(); code != exitFailed {
				t.Errorf("wait %v after SIGUSR1: exit %d, want 1 (not found)", extra, code)
			}
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("wait %v ignored SIGUSR1", extra)
		}
	}
}

// SIGTERM (PostgreSQL shutting down) kills wait by that signal, not with an
// exit code PostgreSQL would read as "not found".
func TestWaitDiesBySIGTERM(t *testing.T) {
	bin := pgtest.Walship(t)
	arch, _, _ := archiveWith(t)
	cmd := exec.Command(bin, "wait", "--archive", arch, "000000010000000000000009", filepath.Join(t.TempDir(), "RECOVERYXLOG"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("wait after SIGTERM: %v, want killed by SIGTERM", err)
	}
}

// SIGQUIT (PostgreSQL's immediate shutdown) ends wait at once with a code
// above 125 and without Go's goroutine dump in the server log.
func TestWaitQuitsOnSIGQUIT(t *testing.T) {
	bin := pgtest.Walship(t)
	arch, _, _ := archiveWith(t)
	cmd := exec.Command(bin, "wait", "--archive", arch, "000000010000000000000009", filepath.Join(t.TempDir(), "RECOVERYXLOG"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code <= 125 {
		t.Errorf("wait after SIGQUIT: exit %d, want above 125", code)
	}
	if strings.Contains(stderr.String(), "goroutine") {
		t.Errorf("wait after SIGQUIT wrote a goroutine dump:\n%s", stderr.String())
	}
}

// SIGINT and SIGHUP end wait by the signal, or with 128+N where the signal
// was ignored when walship started (PostgreSQL's startup process ignores
// SIGINT, and the restore_command inherits that), never with 1, which reads
// as "not found" and promotes. SIGPIPE is ignored: a broken log pipe must
// not end a wait.
func TestWaitSignalsNeverExit1(t *testing.T) {
	bin := pgtest.Walship(t)
	arch, _, _ := archiveWith(t)
	for _, tc := range []struct {
		sig     syscall.Signal
		ignored bool // ignored by the parent, as the startup process does with SIGINT
	}{
		{syscall.SIGINT, false}, {syscall.SIGINT, true}, {syscall.SIGHUP, false}, {syscall.SIGHUP, true},
	} {
		trap := ""
		if tc.ignored {
			trap = `trap "" INT HUP; `
		}
		cmd := exec.Command("sh", "-c", trap+`exec "$0" wait --archive "$1" 000000010000000000000009 "$2"`,
			bin, arch, filepath.Join(t.TempDir(), "RECOVERYXLOG"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if err := cmd.Process.Signal(tc.sig); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !(ws.Signaled() && ws.Signal() == tc.sig) && ws.ExitStatus() <= 125 {
			t.Errorf("%v (ignored at start: %v): %v, want death by the signal or an exit above 125", tc.sig, tc.ignored, cmd.ProcessState)
		}
	}

	cmd := exec.Command(bin, "wait", "--archive", arch, "000000010000000000000009", filepath.Join(t.TempDir(), "RECOVERYXLOG"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGPIPE)
	select {
	case <-done:
		t.Errorf("wait ended on SIGPIPE: %v", cmd.ProcessState)
	case <-time.After(500 * time.Millisecond):
	}
	cmd.Process.Signal(syscall.SIGTERM)
	<-done
}

// An archive directory that does not exist (an NFS share not mounted under
// it) is an unreachable archive: wait keeps waiting, and serves the segment
// once the directory is back.
func TestWaitArchiveDirMissing(t *testing.T) {
	arch, name, seg := archiveWith(t)
	away := arch + ".away"
	if err := os.Rename(arch, away); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	go func() {
		time.Sleep(time.Second)
		os.Rename(away, arch)
	}()
	trig := filepath.Join(t.TempDir(), "trigger")
	if code, stderr := walshipRun(t, "promote", "--trigger", trig); code != 0 { // even smart must wait
		t.Fatalf("promote: %d %s", code, stderr)
	}
	code, stderr := walshipRun(t, "wait", "--archive", arch, "--trigger", trig, "--poll", "100ms", name, dest)
	if code != 0 {
		t.Fatalf("wait with the archive directory missing for 1s: exit %d, want 0; %s", code, stderr)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, seg) {
		t.Error("restored segment differs")
	}
	if !strings.Contains(stderr, "does not exist") {
		t.Errorf("stderr does not say the archive directory is missing: %q", stderr)
	}
}

// A trigger file older than the server's start still acts, with a warning
// that names its age: a stale trigger promotes the wrong standby.
func TestWaitWarnsOfStaleTrigger(t *testing.T) {
	arch, _, _ := archiveWith(t)
	pgdata := t.TempDir()
	pid := fmt.Sprintf("%d\n%s\n%d\n5432\n", os.Getpid(), pgdata, time.Now().Unix())
	if err := os.WriteFile(filepath.Join(pgdata, "postmaster.pid"), []byte(pid), 0o600); err != nil {
		t.Fatal(err)
	}
	trig := filepath.Join(t.TempDir(), "trigger")
	if code, stderr := walshipRun(t, "promote", "--trigger", trig); code != 0 {
		t.Fatalf("promote: %d %s", code, stderr)
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	args := []string{"wait", "--archive", arch, "--pgdata", pgdata, "--trigger", trig, "000000010000000000000009", dest}
	if code, stderr := walshipRun(t, args...); code != exitFailed || strings.Contains(stderr, "older than this server") {
		t.Errorf("fresh trigger: exit %d, stderr %q; want 1 and no warning", code, stderr)
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(trig, old, old); err != nil {
		t.Fatal(err)
	}
	if code, stderr := walshipRun(t, args...); code != exitFailed || !strings.Contains(stderr, "older than this server's start") || !strings.Contains(stderr, "age=2h") {
		t.Errorf("stale trigger: exit %d, stderr %q; want 1 and a warning with its age", code, stderr)
	}
}
