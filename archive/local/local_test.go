package local

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/archivetest"
)

func newStorage(t *testing.T) *Storage {
	t.Helper()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatalf("New: got %v, want nil", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	archivetest.Run(t, func(t *testing.T) archive.Storage { return newStorage(t) })
}

// TestConformanceLinkFallback runs the suite as on NFS or an old kernel,
// where renameat2 says EINVAL and Put falls back to link(2).
func TestConformanceLinkFallback(t *testing.T) {
	archivetest.Run(t, func(t *testing.T) archive.Storage {
		s := newStorage(t)
		s.renameNoReplace = func(string, string) error { return unix.EINVAL }
		return s
	})
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	if _, err := New(missing); err == nil || !strings.Contains(err.Error(), "does not exist: create it") {
		t.Errorf("New(%q): got %v, want an error saying to create it", missing, err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("New(%q): got %v, want an error saying it is not a directory", file, err)
	}
	s, err := New(dir + "/")
	if err != nil {
		t.Fatalf("New(%q): got %v, want nil", dir, err)
	}
	if s.String() != dir {
		t.Errorf("String(): got %q, want %q", s.String(), dir)
	}
}

// TestRootRemoved checks that Put does not quietly recreate an archive root
// that went away, such as an unmounted NFS export.
func TestRootRemoved(t *testing.T) {
	root := filepath.Join(t.TempDir(), "archive")
	if err := os.Mkdir(root, 0o750); err != nil {
		t.Fatal(err)
	}
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(root); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"top", "wal/seg"} {
		err := s.Put(t.Context(), name, strings.NewReader("x"))
		if err == nil || !strings.Contains(err.Error(), "unmounted or removed") {
			t.Errorf("Put(%q) into a removed root: got %v, want an error asking if it was removed", name, err)
		}
	}
	if _, err := os.Stat(root); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(root) after Put: got %v, want it still missing", err)
	}
}

func TestPutParentIsFile(t *testing.T) {
	s := newStorage(t)
	if err := s.Put(t.Context(), "wal", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	err := s.Put(t.Context(), "wal/seg", strings.NewReader("x"))
	if err == nil || errors.Is(err, fs.ErrExist) {
		t.Errorf("Put(%q) under a file: got %v, want an error other than fs.ErrExist", "wal/seg", err)
	}
}

// needPrivilege skips a test that needs root, or fails it in CI, where a
// missing capability must not pass as a skipped test.
func needPrivilege(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s; CI must run this test as root", reason)
	}
	t.Skipf("%s; run the tests as root to cover this (with CI set, this fails instead)", reason)
}

// mountTmpfs mounts a tmpfs of size bytes and unmounts it when the test ends.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		needPrivilege(t, "mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0750"); err != nil {
		needPrivilege(t, "mount tmpfs on "+dir+": "+err.Error())
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func TestPutDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "2m")
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Put(t.Context(), "wal/big", bytes.NewReader(make([]byte, 4<<20)))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put of 4 MiB into 2 MiB: got %v, want an error matching ENOSPC", err)
	}
	if !strings.Contains(err.Error(), "archive "+dir+" is full") {
		t.Errorf("Put of 4 MiB into 2 MiB: got %q, want it to say the archive is full", err)
	}
	checkNoFiles(t, filepath.Join(dir, "wal"))

	// Once the failed Put cleaned up after itself, there is room again.
	if err := s.Put(t.Context(), "wal/small", bytes.NewReader(make([]byte, 1<<20))); err != nil {
		t.Errorf("Put of 1 MiB after a failed Put: got %v, want nil", err)
	}
}

func TestPutReadOnly(t *testing.T) {
	t.Run("chmod", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root ignores file permissions; the mount case tests a read-only archive as root")
		}
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "wal"), 0o750); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{dir, filepath.Join(dir, "wal")} {
			if err := os.Chmod(d, 0o500); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(d, 0o700) })
		}
		s, err := New(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"top", "wal/seg", "new/seg"} {
			err := s.Put(t.Context(), name, strings.NewReader("x"))
			if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "writable") {
				t.Errorf("Put(%q) into a mode 0500 archive: got %v, want a permission error saying it must be writable", name, err)
			}
		}
		checkNoFiles(t, filepath.Join(dir, "wal"))
	})
	t.Run("mount", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("remounting read-only needs root; the chmod case tests a read-only archive without")
		}
		dir := mountTmpfs(t, "2m")
		if err := os.Mkdir(filepath.Join(dir, "wal"), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			t.Fatalf("remount %s read-only: %v", dir, err)
		}
		s, err := New(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"top", "wal/seg", "new/seg"} {
			err := s.Put(t.Context(), name, strings.NewReader("x"))
			if !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "read-only") {
				t.Errorf("Put(%q) into a read-only mount: got %v, want an error matching EROFS", name, err)
			}
		}
		checkNoFiles(t, filepath.Join(dir, "wal"))
	})
}

// checkNoFiles checks that dir holds nothing at all, temporary files
// included.
func checkNoFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("found %s in %s after a failed Put, want nothing", e.Name(), dir)
	}
}

// TestPutKilled kills a process in the middle of a Put, as the OOM killer or
// a power cut would, and checks that nothing shows under the final name.
func TestPutKilled(t *testing.T) {
	if os.Getenv("WALSHIP_CHILD") == "1" {
		s, err := New(os.Getenv("WALSHIP_ROOT"))
		if err != nil {
			t.Fatal(err)
		}
		r := io.MultiReader(bytes.NewReader(make([]byte, 1<<20)), stallForever{})
		err = s.Put(context.Background(), "wal/seg", r)
		t.Fatalf("Put returned %v, want it to block until killed", err)
	}

	root := t.TempDir()
	var out bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestPutKilled$")
	cmd.Env = append(os.Environ(), "WALSHIP_CHILD=1", "WALSHIP_ROOT="+root)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	tmp := waitForTempFile(t, filepath.Join(root, "wal"), 1<<20, exited, &out)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited

	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(t.Context(), "wal/seg"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(%q) after the Put was killed: got %v, want fs.ErrNotExist", "wal/seg", err)
	}
	if list, err := s.List(t.Context(), "wal"); err != nil || len(list) != 0 {
		t.Errorf("List(%q) after the Put was killed: got %v, %v; want nothing", "wal", list, err)
	}
	// The temporary file stays, hidden, as the package documents.
	if _, err := os.Stat(tmp); err != nil {
		t.Errorf("temporary file of the killed Put: got %v, want it left behind", err)
	}
	if err := s.Put(t.Context(), "wal/seg", strings.NewReader("retry")); err != nil {
		t.Errorf("Put(%q) after a killed Put: got %v, want nil", "wal/seg", err)
	}
}

// waitForTempFile waits until a hidden file of size bytes appears in dir and
// returns its path.
func waitForTempFile(t *testing.T, dir string, size int64, exited <-chan error, out *bytes.Buffer) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			t.Fatalf("child exited before it was killed: %v\n%s", err, out)
		default:
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), ".") && fi.Size() == size {
				return filepath.Join(dir, e.Name())
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no temporary file of %d bytes in %s after 10s", size, dir)
	return ""
}

// stallForever is a reader that never returns, like a pipe from a hung
// process. It sleeps rather than blocking on a channel, so that the runtime
// does not report a deadlock.
type stallForever struct{}

func (stallForever) Read([]byte) (int, error) {
	for {
		time.Sleep(time.Hour)
	}
}

func TestWatchClose(t *testing.T) {
	s := newStorage(t)
	ch, err := s.Watch(t.Context(), "wal")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	select {
	case <-ch:
		if _, ok := <-ch; ok {
			t.Errorf("Watch channel got a value after Close, want it closed")
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("Watch channel still open 2s after Close, want it closed")
	}
	if _, err := s.Watch(t.Context(), "wal"); err == nil {
		t.Errorf("Watch after Close: got nil, want an error")
	}
}

// TestWatchIgnoresTempFiles checks that a Put's writes to its temporary file
// do not wake the watcher before the file has its final name.
func TestWatchIgnoresTempFiles(t *testing.T) {
	s := newStorage(t)
	ch, err := s.Watch(t.Context(), "wal")
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(s.root, "wal", ".seg.tmp.0123")
	if err := os.WriteFile(tmp, []byte("partial"), 0o640); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Errorf("Watch signalled for a temporary file, want no signal")
	case <-time.After(200 * time.Millisecond):
	}
}

// Run as root in an archive another user owns, walship gives what it creates
// to that user: a backup taken by root must stay readable and removable by
// the PostgreSQL user's restore_command and archive_cleanup_command.
func TestPutAsRootKeepsArchiveOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root; CI runs as root")
	}
	const uid, gid = 65534, 65534 // nobody, nogroup
	root := t.TempDir()
	if err := os.Chown(root, uid, gid); err != nil {
		t.Fatal(err)
	}
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, "backups/20261122T000000Z/base.tar.zst", strings.NewReader("data")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Watch(ctx, "wal"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"backups", "backups/20261122T000000Z", "backups/20261122T000000Z/base.tar.zst", "wal"} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != uid || st.Gid != gid {
			t.Errorf("%s is owned by %d:%d, want the archive's owner %d:%d", p, st.Uid, st.Gid, uid, gid)
		}
	}

	// An archive root owns itself: nothing changes hands.
	mine := t.TempDir()
	s, err = New(mine)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "x/y", strings.NewReader("data")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(mine, "x/y"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 {
		t.Errorf("x/y in root's own archive is owned by %d, want 0", st.Uid)
	}
}
