package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/internal/pgtest"
)

// TestCheck runs walship check against a primary that archives with
// walship push: it passes, and it fails with the reason for an
// archive_command that fails, one that is not walship's, an archive of
// another cluster, an archive the server does not archive into, and a
// segment that does not arrive in time.
func TestCheck(t *testing.T) {
	s := newBackupSetup(t)
	p := s.primary
	check := func(t *testing.T, arch string, args ...string) (string, int) {
		t.Helper()
		out, err := s.walshipErr(append([]string{"check", "--archive", arch, "--dsn", p.ConnString()}, args...)...)
		var ee *exec.ExitError
		switch {
		case err == nil:
			return out, 0
		case errors.As(err, &ee):
			return out, ee.ExitCode()
		}
		t.Fatalf("walship check: %v", err)
		return "", 0
	}
	setCommand := func(t *testing.T, cmd string) {
		t.Helper()
		if cmd == "" {
			p.Exec(t, "ALTER SYSTEM RESET archive_command")
		} else {
			p.Exec(t, fmt.Sprintf("ALTER SYSTEM SET archive_command = '%s'", strings.ReplaceAll(cmd, "'", "''")))
		}
		p.Exec(t, "SELECT pg_reload_conf()")
		want := cmd
		if want == "" {
			want = fmt.Sprintf("%s push --archive %s %%p %%f", s.bin, s.arch)
		}
		p.WaitFor(t, "SELECT current_setting('archive_command')", want, 30*time.Second)
	}
	wantFail := func(t *testing.T, out string, code int, say string) {
		t.Helper()
		if code != 1 || !strings.Contains(out, say) {
			t.Errorf("walship check: exit %d, want 1 and %q in:\n%s", code, say, out)
		}
	}

	t.Run("passes", func(t *testing.T) {
		out, code := check(t, s.arch, "--timeout", "1m")
		if code != 0 || !strings.Contains(out, "archiving works") || !strings.Contains(out, "ok: archive_command runs walship push") {
			t.Fatalf("walship check: exit %d\n%s", code, out)
		}
	})

	t.Run("archive of another cluster", func(t *testing.T) {
		other := pgtest.TempDir(t)
		id := `{"format":1,"system_identifier":"42","pg_version":15,"wal_segment_size":1048576,"wal_block_size":8192}`
		if err := os.WriteFile(filepath.Join(other, "walship.json"), []byte(id), 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := check(t, other)
		wantFail(t, out, code, "belongs to system 42")
	})

	t.Run("archives elsewhere", func(t *testing.T) {
		start := time.Now()
		out, code := check(t, pgtest.TempDir(t), "--timeout", "1m")
		wantFail(t, out, code, "archive_command archives elsewhere")
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("took %v: it should notice at once", d)
		}
	})

	t.Run("not walship", func(t *testing.T) {
		setCommand(t, "/bin/true")
		defer setCommand(t, "")
		out, code := check(t, s.arch)
		wantFail(t, out, code, "does not run walship push")
	})

	t.Run("archive_command fails", func(t *testing.T) {
		walDir := filepath.Join(s.arch, "wal")
		if err := os.Chmod(walDir, 0o555); err != nil {
			t.Fatal(err)
		}
		defer func() {
			os.Chmod(walDir, 0o750)
			s.archiveAll(t)
		}()
		out, code := check(t, s.arch, "--timeout", "8s")
		wantFail(t, out, code, "archive_command failed")
	})

	t.Run("timeout", func(t *testing.T) {
		setCommand(t, fmt.Sprintf("sleep 4 && %s push --archive %s %%p %%f", s.bin, s.arch))
		defer setCommand(t, "")
		start := time.Now()
		out, code := check(t, s.arch, "--timeout", "2s")
		wantFail(t, out, code, "was not archived into")
		if !strings.Contains(out, "within 2s") {
			t.Errorf("no timeout in:\n%s", out)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("took %v with --timeout 2s", d)
		}
	})
}
