package pgtest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

var (
	walshipOnce sync.Once
	walshipPath string
	walshipErr  error
)

// Walship builds ./cmd/walship of this module, once per test process, and
// returns the path of the binary, which the cluster's user can run (as
// archive_command or restore_command). A failed build fails the test with the
// compiler's output.
func Walship(t testing.TB) string {
	t.Helper()
	u := pgUser(t)
	walshipOnce.Do(func() { walshipPath, walshipErr = buildWalship(u) })
	if walshipErr != nil {
		t.Fatal(walshipErr)
	}
	return walshipPath
}

// buildWalship builds into a directory named after the module root, so that
// test runs replace one binary instead of leaving one each behind. Each
// process builds under a name of its own and renames, so processes running
// in parallel never see a half-written binary.
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
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(reachableTempDir(u), "walship-pgtest-"+hex.EncodeToString(sum[:6]))
	if err := ownDir(dir); err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build walship: %w", err)
	}
	tmp := filepath.Join(dir, fmt.Sprintf("walship.%d.tmp", os.Getpid()))
	cmd := exec.Command(goTool, "build", "-o", tmp, "./cmd/walship")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go build ./cmd/walship: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, "walship")
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// ownDir makes dir, readable and searchable by everyone, or checks that the
// existing one is a directory of ours that no one else can write: its name is
// predictable, and the binary in it runs as the test's user.
func ownDir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err == nil {
		// Mkdir obeys the umask; the PostgreSQL user must reach the binary.
		if err := os.Chmod(dir, 0o755); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is not a directory owned by uid %d and writable only by it: remove it", dir, os.Geteuid())
	}
	return nil
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
