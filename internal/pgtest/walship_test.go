package pgtest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The binary Walship builds is gone once the test process that built it has
// exited: this test runs itself again as that process.
func TestWalshipRemovedAtExit(t *testing.T) {
	if os.Getenv("PGTEST_WALSHIP_CHILD") == "1" {
		fmt.Printf("walship at %s\n", Walship(t))
		return
	}
	if testing.Short() {
		t.Skip("-short: builds walship")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestWalshipRemovedAtExit$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PGTEST_WALSHIP_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child test process: %v\n%s", err, out)
	}
	_, bin, ok := strings.Cut(string(out), "walship at ")
	bin, _, _ = strings.Cut(bin, "\n")
	if !ok || !strings.HasPrefix(filepath.Base(filepath.Dir(bin)), walshipDirPrefix) {
		t.Fatalf("child test process printed no walship path:\n%s", out)
	}
	waitGone(t, filepath.Dir(bin))
}

func TestRemoveOnExit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bin")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "walship"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	hold, err := removeOnExit(dir)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(dir, "walship")); err != nil {
		t.Fatalf("removed while the pipe is open: %v", err)
	}
	hold.Close() // as the kernel does when the process exits
	waitGone(t, dir)
}

func TestRemoveStale(t *testing.T) {
	parent := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{ // name: whether removeStale keeps it
		fmt.Sprintf("%s%d-1", walshipDirPrefix, os.Getpid()):      true,
		fmt.Sprintf("%s%d-2", walshipDirPrefix, dead.Process.Pid): false,
		walshipDirPrefix + "ef3aa0f89103":                         true, // older versions' shared directory
		walshipDirPrefix + "x-3":                                  true,
		fmt.Sprintf("other-%d-4", dead.Process.Pid):               true,
	}
	for name := range names {
		if err := os.MkdirAll(filepath.Join(parent, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	removeStale(parent)
	for name, keep := range names {
		_, err := os.Stat(filepath.Join(parent, name))
		if got := err == nil; got != keep {
			t.Errorf("%s kept = %v, want %v (%v)", name, got, keep, err)
		}
	}
}

// waitGone fails the test unless dir disappears within five seconds.
func waitGone(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := os.Stat(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still there: %v", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
