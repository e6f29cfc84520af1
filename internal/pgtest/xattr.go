package pgtest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// NeedUserXattrs makes sure the file system of dir keeps user extended
// attributes, which push's look-ahead marks segments with (ext4, xfs, and
// tmpfs since Linux 6.6 do). Where it does not, the test fails in CI, which
// must run where they are kept, and is skipped elsewhere.
func NeedUserXattrs(t testing.TB, dir string) {
	t.Helper()
	probe := filepath.Join(dir, ".xattr-probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(probe)
	err := unix.Setxattr(probe, "user.walship.probe", []byte("1"), 0)
	switch {
	case err == nil:
		return
	case !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EOPNOTSUPP):
		t.Fatalf("setxattr on %s: %v", probe, err)
	case os.Getenv("CI") != "":
		t.Fatalf("the file system of %s keeps no user extended attributes (%v): CI must run on one that does (ext4, xfs, tmpfs on Linux 6.6 or later)", dir, err)
	}
	t.Skipf("no user extended attributes in %s: %v", dir, err)
}
