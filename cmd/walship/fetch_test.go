package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walship/walship/archive/sftp/sftptest"
	"github.com/walship/walship/internal/cli"
	"github.com/walship/walship/waiter"
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

// archiveOfSegments34 returns an archive holding segments 3 and 4 of
// cluster 42, the directory they were pushed from, and the app that pushed
// them with the buffer of its output.
func archiveOfSegments34(t *testing.T) (arch, dir string, run func(args ...string) (int, error), out *bytes.Buffer) {
	t.Helper()
	arch, dir, out = t.TempDir(), t.TempDir(), new(bytes.Buffer)
	run = backupApp(out)
	for i, name := range []string{"000000010000000000000003", "000000010000000000000004"} {
		seg := filepath.Join(dir, name)
		os.WriteFile(seg, segment(42, uint64(3+i), 7), 0o600)
		if code, err := run("push", "--archive", arch, seg, name); code != exitOK {
			t.Fatalf("push: %d, %v", code, err)
		}
	}
	return arch, dir, run, out
}

func TestFetchPrefetchSpawns(t *testing.T) {
	arch, dir, run, out := archiveOfSegments34(t)
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

// silentSFTP returns an sftp:// archive whose server accepts connections
// and never answers, and the options to reach it (a 2 s timeout): a call
// that opens it takes seconds, one that does not, none.
func silentSFTP(t *testing.T) (string, sshOptions) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	keyDir := t.TempDir()
	knownHosts, identity := filepath.Join(keyDir, "known_hosts"), filepath.Join(keyDir, "id_ed25519")
	hostKey, _ := sftptest.NewKey(t)
	sftptest.WriteFile(t, knownHosts, []byte(sftptest.KnownHostsLine(ln.Addr().String(), hostKey.PublicKey())))
	_, key := sftptest.NewKey(t)
	sftptest.WriteFile(t, identity, key)
	return "sftp://walship@" + ln.Addr().String() + "/archive",
		sshOptions{KnownHosts: knownHosts, Identities: []string{identity}, Timeout: 2 * time.Second}
}

// A prefetcher started while another holds the spool's lock exits without
// opening the archive (over SFTP, a login for nothing).
func TestPrefetcherSkipsWhileAnotherRuns(t *testing.T) {
	pgdata := t.TempDir()
	spoolDir := filepath.Join(pgdata, waiter.DefaultSpoolDir)
	os.MkdirAll(spoolDir, 0o700)
	lock, err := os.OpenFile(filepath.Join(spoolDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	gone, sshOpts := silentSFTP(t)
	start := time.Now()
	err = runFetch(context.Background(), slog.New(slog.DiscardHandler), fetchOptions{
		Archive: gone, Prefetch: 8, PGData: pgdata, FillAfter: "000000010000000000000003", SSH: sshOpts,
	})
	if err != nil || time.Since(start) > 250*time.Millisecond {
		t.Errorf("prefetcher while another runs: %v after %v, want nil at once", err, time.Since(start))
	}
}

// writeControl gives pgdata a pg_control naming cluster sysid.
func writeControl(t *testing.T, pgdata string, sysid uint64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(pgdata, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	control := make([]byte, 8192)
	binary.LittleEndian.PutUint64(control, sysid)
	if err := os.WriteFile(filepath.Join(pgdata, "global", "pg_control"), control, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A segment the prefetcher spooled is served without opening the archive
// (over SFTP, a login saved per segment), checked against the standby's
// own pg_control; a copy of another cluster is removed, not served, and
// without a pg_control the archive decides as before.
func TestFetchSpooledWithoutArchive(t *testing.T) {
	arch, dir, run, out := archiveOfSegments34(t)
	pgdata := t.TempDir()
	writeControl(t, pgdata, 42)
	spoolDir := filepath.Join(pgdata, "pg_wal", "walship-spool")
	if code, err := run("fetch", "--archive", arch, "--prefetch", "2", "--pgdata", pgdata, "--prefetch-after", "000000010000000000000003"); code != exitOK {
		t.Fatalf("prefetcher: exit %d, %v\n%s", code, err, out.String())
	}
	if _, err := os.Stat(filepath.Join(spoolDir, "000000010000000000000004")); err != nil {
		t.Fatalf("prefetcher left no segment 4: %v", err)
	}

	// The archive is now an SFTP server that accepts connections and never
	// answers: opening it would take the whole --ssh-timeout. The spooled
	// copy is served at once, and the next prefetcher is started.
	gone, sshOpts := silentSFTP(t)
	dest := filepath.Join(dir, "RECOVERYXLOG")
	var spawned []string
	fetch := func(pgdata, name, archive string) error {
		spawned = nil
		return runFetch(context.Background(), slog.New(slog.DiscardHandler), fetchOptions{
			Archive: archive, Prefetch: 2, PGData: pgdata, Name: name, Dest: dest, RetryFor: 300 * time.Millisecond,
			SSH:   sshOpts,
			spawn: func(args []string) error { spawned = args; return nil },
		})
	}
	start := time.Now()
	if err := fetch(pgdata, "000000010000000000000004", gone); err != nil {
		t.Fatalf("fetch of a spooled segment, the archive unreachable: %v", err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("served from the spool after %v: it waited for the archive", d)
	}
	if b, _ := os.ReadFile(dest); !bytes.Equal(b, segment(42, 4, 7)) {
		t.Errorf("the served segment is not segment 4")
	}
	if want := "--prefetch-after 000000010000000000000004"; !strings.Contains(strings.Join(spawned, " "), want) {
		t.Errorf("after serving from the spool, spawned %q, want a prefetcher with %s", spawned, want)
	}

	// Another cluster's copy under the name: removed, and the archive
	// asked (a local one that is not mounted, so the fetch fails after
	// --retry-for, never serving it).
	os.Remove(dest)
	foreign := filepath.Join(spoolDir, "000000010000000000000005")
	if err := os.WriteFile(foreign, segment(43, 5, 7), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := fetch(pgdata, "000000010000000000000005", filepath.Join(t.TempDir(), "unmounted")); err == nil {
		t.Fatal("fetch served another cluster's spooled segment")
	}
	if _, err := os.Stat(foreign); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the foreign spooled segment is still there: %v", err)
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists after a refused copy: %v", dest, err)
	}

	// No pg_control (not run in a data directory), or one that names no
	// cluster (zeros): nothing local says which cluster a copy must be of,
	// so the spool is not served before the archive's identity is read.
	for name, sysid := range map[string]uint64{"no pg_control": 1, "zeroed pg_control": 0} {
		pd := t.TempDir()
		if sysid == 0 {
			writeControl(t, pd, 0)
		}
		sp := &waiter.Spool{Dir: filepath.Join(pd, waiter.DefaultSpoolDir)}
		os.MkdirAll(sp.Dir, 0o700)
		copyPath := filepath.Join(sp.Dir, "000000010000000000000006")
		if err := os.WriteFile(copyPath, segment(43, 6, 7), 0o600); err != nil {
			t.Fatal(err)
		}
		opts := fetchOptions{Archive: arch, Prefetch: 2, PGData: pd, Name: "000000010000000000000006", Dest: dest,
			spawn: func([]string) error { return nil }}
		if fetchSpooled(slog.New(slog.DiscardHandler), opts, pd, sp) {
			t.Errorf("%s: served a spooled segment without the archive", name)
		}
		if _, err := os.Stat(copyPath); err != nil {
			t.Errorf("%s: the spooled copy was taken: %v", name, err)
		}
	}
}
