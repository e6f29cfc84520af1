package pgtest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/walship/walship/internal/pgver"
)

// runAs is the operating system user that PostgreSQL programs run as.
type runAs struct {
	name string
	uid  int
	gid  int
	// cred is nil when the test process already is that user.
	cred *syscall.Credential
}

var (
	binDirOnce sync.Once
	binDirPath string
	binDirErr  error

	userOnce sync.Once
	userVal  runAs
	userErr  error

	majorOnce sync.Once
	majorVal  pgver.Major
	majorErr  error
)

// BinDir returns the directory holding the PostgreSQL server programs:
// $WALSHIP_PG_BINDIR, else the newest /usr/lib/postgresql/*/bin that has
// initdb, else the output of "pg_config --bindir". The test fails when none
// holds initdb, pg_ctl and postgres.
func BinDir(t testing.TB) string {
	t.Helper()
	binDirOnce.Do(func() { binDirPath, binDirErr = findBinDir() })
	if binDirErr != nil {
		t.Fatal(binDirErr)
	}
	return binDirPath
}

func findBinDir() (string, error) {
	if dir := os.Getenv("WALSHIP_PG_BINDIR"); dir != "" {
		if err := checkBinDir(dir); err != nil {
			return "", fmt.Errorf("WALSHIP_PG_BINDIR=%s: %w: point it at the bin directory "+
				"of a PostgreSQL server installation (Debian package postgresql)", dir, err)
		}
		return dir, nil
	}
	if dir := newestDebianBinDir(); dir != "" {
		return dir, nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if checkBinDir(dir) == nil {
			return dir, nil
		}
	}
	return "", errors.New("PostgreSQL server programs (initdb, pg_ctl, postgres) not found: " +
		"install the Debian package postgresql (apt-get install postgresql), " +
		"or set WALSHIP_PG_BINDIR to the directory that holds them")
}

// newestDebianBinDir returns the bin directory of the highest major version
// installed in Debian's layout, or "" when there is none.
func newestDebianBinDir() string {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	type candidate struct {
		dir     string
		version float64
	}
	var found []candidate
	for _, m := range matches {
		dir := filepath.Dir(m)
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		if err != nil || checkBinDir(dir) != nil {
			continue
		}
		found = append(found, candidate{dir, v})
	}
	if len(found) == 0 {
		return ""
	}
	sort.Slice(found, func(i, j int) bool { return found[i].version > found[j].version })
	return found[0].dir
}

// Major returns the PostgreSQL major version of the server programs in
// BinDir, such as 15, from postgres --version. Tests use it for what
// differs between majors; it fails the test for a major walship does not
// know.
func Major(t testing.TB) pgver.Major {
	t.Helper()
	dir := BinDir(t)
	majorOnce.Do(func() { majorVal, majorErr = findMajor(dir) })
	if majorErr != nil {
		t.Fatal(majorErr)
	}
	return majorVal
}

func findMajor(dir string) (pgver.Major, error) {
	out, err := exec.Command(filepath.Join(dir, "postgres"), "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("%s/postgres --version: %w", dir, err)
	}
	// "postgres (PostgreSQL) 15.4 (Debian 15.4-1.pgdg120+1)"
	_, v, ok := strings.Cut(string(out), ") ")
	if !ok {
		return 0, fmt.Errorf("%s/postgres --version printed %q", dir, out)
	}
	m, err := pgver.Parse(v)
	if err != nil {
		return 0, err
	}
	return m, m.CheckKnown("the tests")
}

func checkBinDir(dir string) error {
	for _, prog := range []string{"initdb", "pg_ctl", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, prog))
		if err != nil {
			return fmt.Errorf("no %s: %w", prog, err)
		}
		if fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not executable", filepath.Join(dir, prog))
		}
	}
	return nil
}

// pgUser returns the user PostgreSQL programs run as: the current user, or,
// when that is root, $WALSHIP_PG_USER, else "postgres", else "nobody".
func pgUser(t testing.TB) runAs {
	t.Helper()
	userOnce.Do(func() { userVal, userErr = findUser() })
	if userErr != nil {
		t.Fatal(userErr)
	}
	return userVal
}

func findUser() (runAs, error) {
	if os.Geteuid() != 0 {
		name := strconv.Itoa(os.Geteuid())
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		return runAs{name: name, uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	names := []string{"postgres", "nobody"}
	if env := os.Getenv("WALSHIP_PG_USER"); env != "" {
		// An explicit choice must exist; falling back would hide a typo.
		names = []string{env}
	}
	var lastErr error
	for _, name := range names {
		u, err := user.Lookup(name)
		if err != nil {
			lastErr = err
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 != nil || err2 != nil {
			lastErr = fmt.Errorf("user %s has a non-numeric uid or gid", name)
			continue
		}
		if uid == 0 {
			lastErr = fmt.Errorf("user %s is root, and PostgreSQL refuses to run as root", name)
			continue
		}
		return runAs{
			name: name, uid: uid, gid: gid,
			// An empty Groups drops root's supplementary groups.
			cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
		}, nil
	}
	return runAs{}, fmt.Errorf("running as root, and no unprivileged user to run PostgreSQL as (%v): "+
		"create one (useradd --system walship-test) and set WALSHIP_PG_USER", lastErr)
}

// Chown gives path, and everything below it, to the user PostgreSQL runs as.
// It does nothing unless the test runs as root.
func Chown(t testing.TB, path string) {
	t.Helper()
	u := pgUser(t)
	if u.cred == nil {
		return
	}
	err := filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, u.uid, u.gid)
	})
	if err != nil {
		t.Fatalf("chown %s to %s: %v", path, u.name, err)
	}
}

// TempDir returns a new empty directory that the PostgreSQL user owns and can
// reach, for archives, trigger files and the like. It is removed when the test
// and all its subtests end.
func TempDir(t testing.TB) string {
	t.Helper()
	dir := newDir(t, "pgtest-tmp-")
	t.Cleanup(func() { removeAll(t, dir) })
	return dir
}

// newDir makes a directory, owned by the PostgreSQL user, in a parent that
// user can traverse. The caller removes it.
func newDir(t testing.TB, prefix string) string {
	t.Helper()
	u := pgUser(t)
	dir, err := os.MkdirTemp(reachableTempDir(u), prefix)
	if err != nil {
		t.Fatal(err)
	}
	if u.cred != nil {
		if err := os.Chown(dir, u.uid, u.gid); err != nil {
			os.Remove(dir)
			t.Fatal(err)
		}
	}
	return dir
}

// reachableTempDir returns os.TempDir() when the PostgreSQL user can traverse
// every directory down to it, else /tmp. A root-owned TMPDIR below /root would
// otherwise make every cluster fail with "permission denied".
func reachableTempDir(u runAs) string {
	dir := os.TempDir()
	if u.cred == nil {
		return dir
	}
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if p == filepath.Dir(p) {
			return dir
		}
	}
}

func removeAll(t testing.TB, dir string) {
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("remove %s: %v", dir, err)
	}
}

// command returns a command that runs as the PostgreSQL user, with home as
// its HOME and working directory, and env added to an environment cleared of
// inherited PG* variables. A bare name found in the bin directory runs from
// there; any other name is looked up as usual.
func command(t testing.TB, home string, env []string, name string, args ...string) *exec.Cmd {
	t.Helper()
	u := pgUser(t)
	path := name
	if !strings.ContainsRune(name, filepath.Separator) {
		if p := filepath.Join(BinDir(t), name); isExecutable(p) {
			path = p
		}
	}
	cmd := exec.Command(path, args...)
	if cmd.Err != nil {
		t.Fatalf("%s: %v", name, cmd.Err)
	}
	cmd.Dir = home
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, "HOME="+home)
	cmd.Env = append(cmd.Env, env...)
	if u.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred}
	}
	return cmd
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
