package local

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/archivetest"
)

func TestFileModes(t *testing.T) {
	archivetest.RunFileModes(t, func(t *testing.T, mode fs.FileMode) archive.Storage {
		s, err := Open(Config{Root: t.TempDir(), FileMode: mode})
		if err != nil {
			t.Fatalf("Open: got %v, want nil", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// withUmask runs the test under umask, as PostgreSQL runs archive_command
// under 077. The umask is the process's: the tests of this package do not
// run in parallel.
func withUmask(t *testing.T, umask int) {
	old := syscall.Umask(umask)
	t.Cleanup(func() { syscall.Umask(old) })
}

func mode(t *testing.T, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestModesIgnoreUmask checks that files and the directories Put creates
// get the configured modes whatever the umask, and that directories that
// exist keep theirs.
func TestModesIgnoreUmask(t *testing.T) {
	for _, tt := range []struct {
		umask          int
		mode, wantDirs fs.FileMode
	}{
		{0o077, 0, 0o750}, // PostgreSQL's umask, the default mode
		{0o077, 0o644, 0o755},
		{0o000, 0o600, 0o700},
		{0o027, 0o604, 0o705},
	} {
		withUmask(t, tt.umask)
		root := t.TempDir()
		if err := os.Chmod(root, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(root, "wal"), 0o711); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(root, "wal"), 0o711); err != nil {
			t.Fatal(err)
		}
		for _, fallback := range []bool{false, true} {
			s, err := Open(Config{Root: root, FileMode: tt.mode})
			if err != nil {
				t.Fatal(err)
			}
			if fallback {
				s.renameNoReplace = func(string, string) error { return syscall.EINVAL }
			}
			wantFiles := tt.mode
			if wantFiles == 0 {
				wantFiles = archive.DefaultFileMode
			}
			seg := "wal/" + map[bool]string{false: "a", true: "b"}[fallback]
			tail := "wal/seg.tail/" + map[bool]string{false: "1", true: "2"}[fallback]
			for _, name := range []string{seg, tail, "backups/20261122T000000Z/base.tar.zst." + seg[4:]} {
				if err := s.Put(t.Context(), name, strings.NewReader("data")); err != nil {
					t.Fatal(err)
				}
				if got := mode(t, s.path(name)); got != wantFiles {
					t.Errorf("umask %03o, mode %04o: %s has mode %04o, want %04o", tt.umask, tt.mode, name, got, wantFiles)
				}
			}
			for _, dir := range []string{"wal/seg.tail", "backups", "backups/20261122T000000Z"} {
				if got := mode(t, s.path(dir)); got != tt.wantDirs {
					t.Errorf("umask %03o, mode %04o: directory %s has mode %04o, want %04o", tt.umask, tt.mode, dir, got, tt.wantDirs)
				}
			}
			if got := mode(t, root); got != 0o700 {
				t.Errorf("the archive root has mode %04o, want its own 0700 kept", got)
			}
			if got := mode(t, s.path("wal")); got != 0o711 {
				t.Errorf("wal/, made before, has mode %04o, want its own 0711 kept", got)
			}
			if _, err := s.Watch(t.Context(), "wal/watched"); err != nil {
				t.Fatal(err)
			}
			if got := mode(t, s.path("wal/watched")); got != tt.wantDirs {
				t.Errorf("umask %03o: directory wal/watched, made by Watch, has mode %04o, want %04o", tt.umask, got, tt.wantDirs)
			}
			os.Remove(s.path("wal/watched"))
			s.Close()
		}
	}
}

func TestOpenRefusesModes(t *testing.T) {
	for _, m := range []fs.FileMode{0o666, 0o660, 0o646, 0o700, 0o400, 0o440, 0o200, 0o1640, 0o755} {
		if _, err := Open(Config{Root: t.TempDir(), FileMode: m}); err == nil {
			t.Errorf("Open with FileMode %04o: got nil, want an error", uint32(m))
		}
	}
}

func TestLeftoverTemp(t *testing.T) {
	s := newStorage(t)
	archivetest.CheckLeftoverTemp(t, s, s.root)
}

// In an archive whose root has the setgid bit (chmod g+s, so that every
// file gets the root's group), the directories Put creates keep it.
func TestModesKeepSetgid(t *testing.T) {
	root := t.TempDir()
	if err := os.Chmod(root, 0o750|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "backups/20261122T000000Z/base.tar.zst", strings.NewReader("data")); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"backups", "backups/20261122T000000Z"} {
		fi, err := os.Lstat(s.path(dir))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fi.Mode()&(fs.ModePerm|fs.ModeSetgid), 0o750|fs.ModeSetgid; got != want {
			t.Errorf("directory %s has mode %v, want %v", dir, got, want)
		}
	}
	if got := mode(t, s.path("backups/20261122T000000Z/base.tar.zst")); got != 0o640 {
		t.Errorf("file has mode %04o, want 0640", got)
	}
}
