package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// modes returns the mode of every file and directory below root, by path
// relative to it.
func modes(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	m := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		m[rel] = fi.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// PostgreSQL runs archive_command under umask 077, and an operator's shell
// may have any: what walship stores is 0640 all the same, its directories
// 0750, so that a backup operator in PostgreSQL's group can read the
// archive. --file-mode in archive_command chooses another mode.
func TestArchiveModes(t *testing.T) {
	s := newBackupSetup(t)
	s.primary.Exec(t, "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
	s.archiveAll(t)
	// A backup from root's cron, under a strict umask.
	cmd := exec.Command("sh", "-c", `umask 077 && exec "$0" "$@"`, s.bin, "backup", "--archive", s.arch,
		"--dsn", s.primary.ConnString(), "--fast-checkpoint", "--wal-timeout", "1m")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("walship backup: %v\n%s", err, out)
	}
	s.archiveAll(t)

	got := modes(t, s.arch)
	var files, dirs int
	for p, m := range got {
		want := fs.FileMode(0o640)
		if m.IsDir() {
			want, dirs = fs.ModeDir|0o750, dirs+1
		} else {
			files++
		}
		if m != want {
			t.Errorf("%s has mode %v, want %v", p, m, want)
		}
	}
	if files < 5 || dirs < 3 || got["walship.json"] == 0 || got["wal"] == 0 || got["backups"] == 0 {
		t.Fatalf("the archive holds %d files and %d directories (%v), want walship.json, WAL and a backup", files, dirs, got)
	}

	s.primary.Exec(t, fmt.Sprintf("ALTER SYSTEM SET archive_command = '%s push --file-mode 0600 --archive %s %%p %%f'", s.bin, s.arch))
	s.primary.Exec(t, "SELECT pg_reload_conf()")
	time.Sleep(time.Second) // for the archiver to reread its settings, which it does between files
	s.primary.Exec(t, "INSERT INTO t SELECT g FROM generate_series(1, 1000) g")
	seg := s.primary.SwitchWAL(t)
	s.primary.WaitArchived(t, seg, time.Minute)
	name := filepath.Join("wal", seg+".zst")
	if m := modes(t, s.arch)[name]; m != 0o600 {
		t.Errorf("%s, pushed with --file-mode 0600, has mode %v, want -rw-------", name, m)
	}

	// A mode that lets others write is refused: PostgreSQL retries, and
	// the archive is untouched.
	out, err := exec.Command(s.bin, "push", "--file-mode", "0666", "--archive", s.arch,
		filepath.Join(s.primary.DataDir, "pg_wal", seg), seg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "must not be able to write") {
		t.Errorf("push --file-mode 0666: %v, %s; want a usage error", err, out)
	}
	if _, err := os.Stat(filepath.Join(s.arch, name)); err != nil {
		t.Errorf("after a refused push: %v", err)
	}
}
