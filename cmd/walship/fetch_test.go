package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/internal/cli"
)

// backupApp is the walship app with the backup commands, whether or not
// newApp lists them yet.
func backupApp(out *bytes.Buffer) func(args ...string) (int, error) {
	return func(args ...string) (int, error) {
		app := newApp(out, out)
		g := &globals{stdout: out, stderr: out, logger: slog.New(slog.DiscardHandler)}
		for _, c := range []*cli.Command{backupCommand(g), restoreCommand(g), fetchCommand(g),
			infoCommand(g), verifyCommand(g), expireCommand(g)} {
			if app.Command(c.Name) == nil {
				if c.OnUsageError == nil {
					c.OnUsageError = onUsageError
				}
				app.Commands = append(app.Commands, c)
			}
		}
		argv := append([]string{"walship"}, args...)
		err := app.RunContext(context.Background(), argv)
		return exitCodeFor(roleOf(argv), err), err
	}
}

func TestFetchExitCodes(t *testing.T) {
	arch, dir := t.TempDir(), t.TempDir()
	var out bytes.Buffer
	run := backupApp(&out)
	seg := filepath.Join(dir, "seg")
	if err := os.WriteFile(seg, segment(42, 3, 7), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, err := run("push", "--archive", arch, seg, "000000010000000000000003"); code != exitOK {
		t.Fatalf("push: %d, %v", code, err)
	}
	if err := os.WriteFile(filepath.Join(arch, "wal", "000000010000000000000004.zst"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "RECOVERYXLOG")
	pgdata := t.TempDir() // no pg_control: the archive's identity decides
	empty := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"found", []string{"--archive", arch, "000000010000000000000003", dest}, exitOK},
		{"not found", []string{"--archive", arch, "000000010000000000000005", dest}, exitFailed},
		{"history not found", []string{"--archive", arch, "00000002.history", dest}, exitFailed},
		{"corrupt", []string{"--archive", arch, "000000010000000000000004", dest}, exitAbortRec},
		{"unmounted", []string{"--archive", empty, "--retry-for", "1ms", "000000010000000000000003", dest}, exitAbortRec},
		{"bad name", []string{"--archive", arch, "../x", dest}, exitAbortRec},
		{"one argument", []string{"--archive", arch, "000000010000000000000003"}, exitAbortRec},
		{"bad flag", []string{"--archive", arch, "--no-such-flag", "000000010000000000000003", dest}, exitAbortRec},
		{"no archive", []string{"000000010000000000000003", dest}, exitAbortRec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out.Reset()
			args := append([]string{"fetch", "--pgdata", pgdata}, tc.args...)
			if code, err := run(args...); code != tc.want {
				t.Errorf("exit %d (%v), want %d\n%s", code, err, tc.want, out.String())
			}
		})
	}
	b, err := os.ReadFile(dest)
	if err != nil || !bytes.Equal(b, segment(42, 3, 7)) {
		t.Errorf("fetched segment differs: %v", err)
	}

	// A standby.signal standby retries by itself: an unreachable archive
	// is exit 1 there, not a stop.
	if err := os.WriteFile(filepath.Join(pgdata, "standby.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, err := run("fetch", "--pgdata", pgdata, "--archive", empty, "--retry-for", "1ms", "000000010000000000000003", dest); code != exitFailed {
		t.Errorf("unmounted archive with standby.signal: exit %d (%v), want 1", code, err)
	}
}

// An archive directory that does not exist is unreachable, not a reason to
// stop at once: fetch retries, then answers as for an unreadable archive.
func TestFetchArchiveDirMissing(t *testing.T) {
	var out bytes.Buffer
	run := backupApp(&out)
	missing := filepath.Join(t.TempDir(), "not-mounted", "main")
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	pgdata := t.TempDir()
	start := time.Now()
	code, err := run("fetch", "--pgdata", pgdata, "--archive", missing, "--retry-for", "500ms", "00000003.history", dest)
	if code != exitAbortRec || time.Since(start) < 500*time.Millisecond {
		t.Errorf("PITR, archive directory missing: exit %d after %v (%v), want %d after retrying 500ms", code, time.Since(start), err, exitAbortRec)
	}
	if err := os.WriteFile(filepath.Join(pgdata, "standby.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	code, err = run("fetch", "--pgdata", pgdata, "--archive", missing, "00000003.history", dest)
	if code != exitFailed || time.Since(start) < standbyRetryFor || time.Since(start) > standbyRetryFor+2*time.Second {
		t.Errorf("standby.signal, archive directory missing: exit %d after %v (%v), want 1 after about %v", code, time.Since(start), err, standbyRetryFor)
	}
}

func init() {
	// A fetch that serves a segment starts a prefetcher (--prefetch is 8 by
	// default): os.Executable is this test binary, which must not be
	// started as one.
	startPrefetcher = func([]string) error { return nil }
}

func TestFetchPrefetchSpawns(t *testing.T) {
	arch, dir := t.TempDir(), t.TempDir()
	var out bytes.Buffer
	run := backupApp(&out)
	for i, name := range []string{"000000010000000000000003", "000000010000000000000004"} {
		seg := filepath.Join(dir, name)
		os.WriteFile(seg, segment(42, uint64(3+i), 7), 0o600)
		if code, err := run("push", "--archive", arch, seg, name); code != exitOK {
			t.Fatalf("push: %d, %v", code, err)
		}
	}
	pgdata := t.TempDir()
	var spawned []string
	err := runFetch(context.Background(), slog.New(slog.DiscardHandler), fetchOptions{
		Archive: arch, Prefetch: 2, PGData: pgdata, Name: "000000010000000000000003",
		Dest: filepath.Join(dir, "RECOVERYXLOG"), spawn: func(args []string) error { spawned = args; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "fetch --archive " + arch + " --prefetch 2 --pgdata " + pgdata + " --prefetch-after 000000010000000000000003"
	if strings.Join(spawned, " ") != want {
		t.Fatalf("spawned %q, want %q", spawned, want)
	}
	// Run the prefetcher as it would be, then fetch 4 from the spool.
	out.Reset()
	if code, err := run(spawned...); code != exitOK {
		t.Fatalf("prefetcher: exit %d, %v\n%s", code, err, out.String())
	}
	spooled := filepath.Join(pgdata, "pg_wal", "walship-spool", "000000010000000000000004")
	if _, err := os.Stat(spooled); err != nil {
		t.Fatalf("prefetcher left no segment 4: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(arch, "wal")); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "RECOVERYXLOG")
	err = runFetch(context.Background(), slog.New(slog.DiscardHandler), fetchOptions{
		Archive: arch, Prefetch: 2, PGData: pgdata, Name: "000000010000000000000004", Dest: dest,
		spawn: func([]string) error { return nil },
	})
	if err != nil {
		t.Fatalf("fetch of a spooled segment with the archive's WAL gone: %v", err)
	}
	if b, _ := os.ReadFile(dest); !bytes.Equal(b, segment(42, 4, 7)) {
		t.Errorf("spooled segment differs")
	}
}
