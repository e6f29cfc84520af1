package sftp_test

import (
	"bytes"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/archivetest"
	"github.com/walship/walship/archive/sftp"
	"github.com/walship/walship/archive/sftp/sftptest"
)

func TestFileModesInProcess(t *testing.T) {
	archivetest.RunFileModes(t, func(t *testing.T, mode fs.FileMode) archive.Storage {
		cfg := serverConfig(t, sftptest.NewServer(t), "archive")
		cfg.FileMode = mode
		return dial(t, cfg)
	})
}

func TestFileModesOpenSSH(t *testing.T) {
	d := sftptest.StartSSHD(t)
	archivetest.RunFileModes(t, func(t *testing.T, mode fs.FileMode) archive.Storage {
		cfg := sshdConfig(t, d)
		cfg.FileMode = mode
		return dial(t, cfg)
	})
}

func localMode(t *testing.T, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// checkModes puts files into a new archive whose directory is root on this
// host, and checks the modes they and the directories Put made have there.
func checkModes(t *testing.T, cfg sftp.Config, root string, wantFiles, wantDirs fs.FileMode) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(root, "wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "wal"), 0o711); err != nil {
		t.Fatal(err)
	}
	s := dial(t, cfg)
	for _, name := range []string{"walship.json", "wal/seg", "wal/seg.tail/1", "backups/20261122T000000Z/base.tar.zst"} {
		if err := s.Put(t.Context(), name, strings.NewReader("data")); err != nil {
			t.Fatal(err)
		}
		if got := localMode(t, filepath.Join(root, name)); got != wantFiles {
			t.Errorf("%s has mode %04o, want %04o", name, got, wantFiles)
		}
	}
	for _, dir := range []string{"wal/seg.tail", "backups", "backups/20261122T000000Z"} {
		if got := localMode(t, filepath.Join(root, dir)); got != wantDirs {
			t.Errorf("directory %s has mode %04o, want %04o", dir, got, wantDirs)
		}
	}
	if got := localMode(t, filepath.Join(root, "wal")); got != 0o711 {
		t.Errorf("wal/, made before, has mode %04o, want its own 0711 kept", got)
	}
}

// The in-process server creates files 0644 and directories 0755, as
// sftp-server under umask 022 does: Put sets the modes it is given.
func TestModesInProcess(t *testing.T) {
	for _, tt := range []struct{ mode, wantFiles, wantDirs fs.FileMode }{
		{0, 0o640, 0o750},
		{0o600, 0o600, 0o700},
	} {
		srv := sftptest.NewServer(t)
		cfg := serverConfig(t, srv, "archive")
		cfg.FileMode = tt.mode
		checkModes(t, cfg, filepath.Join(srv.Root, "archive"), tt.wantFiles, tt.wantDirs)
	}
}

// sshd started under umask 077 creates files 0600 (as under PostgreSQL's
// umask, should the archive be on this host): Put sets 0640 all the same.
func TestModesOpenSSHUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	d := sftptest.StartSSHD(t)
	syscall.Umask(old)
	cfg := sshdConfig(t, d)
	checkModes(t, cfg, cfg.Path, 0o640, 0o750)
}

// A server that cannot set modes at all keeps its own, with one warning.
func TestModesUnsupported(t *testing.T) {
	srv := sftptest.NewServer(t)
	srv.NoSetstat.Store(true)
	cfg := serverConfig(t, srv, "archive")
	var log bytes.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
	s := dial(t, cfg)
	for _, name := range []string{"wal/a", "wal/b", "backups/x/y"} {
		if err := s.Put(t.Context(), name, strings.NewReader("data")); err != nil {
			t.Fatalf("Put(%q) on a server without SETSTAT: got %v, want nil", name, err)
		}
	}
	if got, want := localMode(t, filepath.Join(srv.Root, "archive", "wal", "a")), 0o644&^umask(); got != want {
		t.Errorf("wal/a has mode %04o, want the server's own %04o", got, want)
	}
	if n := strings.Count(log.String(), "cannot set file modes"); n != 1 {
		t.Errorf("log: got %d warnings that the server cannot set modes, want 1:\n%s", n, log.String())
	}
}

func umask() fs.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return fs.FileMode(m)
}

func TestNewRefusesModes(t *testing.T) {
	for _, m := range []fs.FileMode{0o666, 0o620, 0o700, 0o400, 0o4600} {
		if _, err := sftp.New(sftp.Config{Host: "h", Path: "/a", FileMode: m}); err == nil {
			t.Errorf("New with FileMode %04o: got nil, want an error", uint32(m))
		}
	}
}

func TestLeftoverTempInProcess(t *testing.T) {
	srv := sftptest.NewServer(t)
	s := dial(t, serverConfig(t, srv, "archive"))
	archivetest.CheckLeftoverTemp(t, s, filepath.Join(srv.Root, "archive"))
}

func TestLeftoverTempOpenSSH(t *testing.T) {
	cfg := sshdConfig(t, sftptest.StartSSHD(t))
	archivetest.CheckLeftoverTemp(t, dial(t, cfg), cfg.Path)
}

// Retry, which walship wraps every SFTP archive in, keeps the optional
// interfaces.
func TestRetryKeepsInterfaces(t *testing.T) {
	srv := sftptest.NewServer(t)
	st := archive.Retry(dial(t, serverConfig(t, srv, "archive")), archive.RetryPolicy{})
	if _, ok := st.(archive.TempFiles); !ok {
		t.Errorf("Retry(sftp): not an archive.TempFiles")
	}
	if m, ok := st.(archive.Moder); !ok || m.FileMode() != archive.DefaultFileMode {
		t.Errorf("Retry(sftp): not an archive.Moder with the default mode")
	}
	if _, ok := st.(archive.Watcher); ok {
		t.Errorf("Retry(sftp): an archive.Watcher, want none: SFTP cannot watch")
	}
	archivetest.CheckLeftoverTemp(t, st, filepath.Join(srv.Root, "archive"))
}

// In an archive whose directory has the setgid bit, the directories Put
// creates keep it, on both servers.
func TestModesKeepSetgid(t *testing.T) {
	d := sftptest.StartSSHD(t)
	srv := sftptest.NewServer(t)
	for name, cfg := range map[string]func() (sftp.Config, string){
		"openssh":    func() (sftp.Config, string) { c := sshdConfig(t, d); return c, c.Path },
		"in-process": func() (sftp.Config, string) { return serverConfig(t, srv, "a"), filepath.Join(srv.Root, "a") },
	} {
		c, root := cfg()
		if err := os.Chmod(root, 0o750|fs.ModeSetgid); err != nil {
			t.Fatal(err)
		}
		s := dial(t, c)
		if err := s.Put(t.Context(), "backups/20261122T000000Z/base.tar.zst", strings.NewReader("data")); err != nil {
			t.Fatal(err)
		}
		for _, dir := range []string{"backups", "backups/20261122T000000Z"} {
			fi, err := os.Lstat(filepath.Join(root, dir))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := fi.Mode()&(fs.ModePerm|fs.ModeSetgid), 0o750|fs.ModeSetgid; got != want {
				t.Errorf("%s: directory %s has mode %v, want %v", name, dir, got, want)
			}
		}
	}
}
