package pgtest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

var (
	walshipOnce sync.Once
	walshipPath string
	walshipErr  error
	// walshipHold keeps open the pipe whose end tells the remover to remove
	// the binary. It must stay referenced: a collected *os.File is closed.
	walshipHold *os.File
)

// Walship builds ./cmd/walship of this module, once per test process, and
// returns the path of the binary, which the cluster's user can run (as
// archive_command or restore_command). The binary lives in a directory of
// this process, removed when the process exits. A failed build fails the
// test with the compiler's output.
func Walship(t testing.TB) string {
	t.Helper()
	u := pgUser(t)
	walshipOnce.Do(func() { walshipPath, walshipErr = buildWalship(u) })
	if walshipErr != nil {
		t.Fatal(walshipErr)
	}
	return walshipPath
}

// walshipDirPrefix starts the name of each process's directory, followed by
// its pid, a dash and a random suffix.
const walshipDirPrefix = "walship-pgtest-"

// buildWalship builds into a new directory of this process. Go tests have no
// hook that runs when the test binary ends, and the binary must outlive every
// test that uses it (a server still running archive_command after a test's
// cleanups), so a remover process removes the directory once this process
// has exited, however it exits. A directory per process means that test
// processes running in parallel (go test ./...) never remove or replace each
// other's binary.
func buildWalship(u runAs) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, err := moduleRoot(wd)
	if err != nil {
		return "", err
	}
	if err := noteSources(root); err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build walship: %w", err)
	}
	parent := reachableTempDir(u)
	removeStale(parent)
	dir, err := os.MkdirTemp(parent, fmt.Sprintf("%s%d-", walshipDirPrefix, os.Getpid()))
	if err != nil {
		return "", err
	}
	// MkdirTemp makes it 0700; the PostgreSQL user must reach the binary.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	hold, err := removeOnExit(dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("build walship: %w", err)
	}
	walshipHold = hold
	bin := filepath.Join(dir, "walship")
	cmd := exec.Command(goTool, "build", "-o", bin, "./cmd/walship")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/walship: %v\n%s", err, out)
	}
	// go build obeys the umask.
	if err := os.Chmod(bin, 0o755); err != nil {
		return "", err
	}
	return bin, nil
}

// removeOnExit starts a process that removes dir when the returned file is
// closed. The kernel closes it when this process exits, also on SIGKILL or a
// go test timeout; until then, nothing else holds it (os.Pipe's descriptors
// are close-on-exec), so no server or walship started by a test delays the
// removal.
func removeOnExit(dir string) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", `read -r _; exec rm -rf -- "$1"`, "sh", dir)
	cmd.Stdin = r
	cmd.Dir = "/"
	// Its own process group, so that a Ctrl-C on the test run, which kills
	// the test process, leaves the remover to do its work.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start the remover of %s: %w", dir, err)
	}
	cmd.Process.Release()
	return w, nil
}

// removeStale removes the directories left by test processes that ended
// without their remover (killed along with it, or the machine stopped). The
// directory of a live process, and any directory not ours, is left alone.
func removeStale(parent string) {
	matches, _ := filepath.Glob(filepath.Join(parent, walshipDirPrefix+"*-*"))
	for _, dir := range matches {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), walshipDirPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
			continue
		}
		os.RemoveAll(dir)
	}
}

// processAlive reports whether pid names a process, ours or another user's.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// moduleRoot returns the nearest directory at or above dir that holds go.mod.
func moduleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("no go.mod in %s or above", dir)
		}
	}
}

// noteSources stats the module's Go sources. go test caches a test's result
// until a file the test process opened or stat'ed changes, and it cannot see
// what "go build" reads; without this, an end-to-end test would pass from
// the cache after a change to walship.
func noteSources(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".go") || name == "go.mod" || name == "go.sum" {
			_, err = os.Stat(path)
		}
		return err
	})
}
