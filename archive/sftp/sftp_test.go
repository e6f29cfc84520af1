package sftp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/archivetest"
	"github.com/walship/walship/archive/sftp"
	"github.com/walship/walship/archive/sftp/sftptest"
)

// serverConfig returns a Config for the archive dir of an in-process server,
// creating dir.
func serverConfig(t *testing.T, srv *sftptest.Server, dir string) sftp.Config {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(srv.Root, dir), 0o755); err != nil {
		t.Fatal(err)
	}
	return sftp.Config{
		Host: srv.Host, Port: srv.Port, User: "walship", Path: "/" + dir,
		IdentityFiles:  []string{srv.IdentityFile},
		KnownHostsFile: srv.KnownHostsFile,
		DialTimeout:    10 * time.Second,
		IOTimeout:      10 * time.Second,
	}
}

// sshdConfig returns a Config for a new, empty archive directory on sshd.
func sshdConfig(t *testing.T, d *sftptest.SSHD) sftp.Config {
	t.Helper()
	return sftp.Config{
		Host: d.Host, Port: d.Port, User: d.User, Path: t.TempDir(),
		IdentityFiles:  []string{d.IdentityFile},
		KnownHostsFile: d.KnownHostsFile,
		DialTimeout:    10 * time.Second,
		IOTimeout:      10 * time.Second,
	}
}

func dial(t *testing.T, cfg sftp.Config) *sftp.Storage {
	t.Helper()
	s, err := sftp.Dial(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Dial: got %v, want nil", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformanceInProcess(t *testing.T) {
	archivetest.Run(t, func(t *testing.T) archive.Storage {
		srv := sftptest.NewServer(t)
		return dial(t, serverConfig(t, srv, "archive"))
	})
}

func TestConformanceOpenSSH(t *testing.T) {
	d := sftptest.StartSSHD(t)
	archivetest.Run(t, func(t *testing.T) archive.Storage { return dial(t, sshdConfig(t, d)) })
}

// checkNotMissing fails the test when err could read as a missing file.
func checkNotMissing(t *testing.T, what string, err error) {
	t.Helper()
	if errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: got %v, which matches fs.ErrNotExist; a connection or setup problem must never read as a missing file", what, err)
	}
}

// hiddenFiles returns the names starting with "." in a local directory.
func hiddenFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names
}

// TestFsync checks that Put flushes with fsync@openssh.com where the server
// offers it (OpenSSH), and works without it (the in-process server).
func TestFsync(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  func(t *testing.T) sftp.Config
		want string
	}{
		{"openssh", func(t *testing.T) sftp.Config { return sshdConfig(t, sftptest.StartSSHD(t)) }, "fsync=true"},
		{"in-process", func(t *testing.T) sftp.Config { return serverConfig(t, sftptest.NewServer(t), "a") }, "fsync=false"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			cfg := tt.cfg(t)
			cfg.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
			s := dial(t, cfg)
			if err := s.Put(t.Context(), "wal/seg", strings.NewReader("data")); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(log.String(), tt.want) {
				t.Errorf("log: got %q, want %q", log.String(), tt.want)
			}
		})
	}
}

// TestPutLeavesNoTempFile checks that a failed Put removes its temporary
// file on a connection that still works.
func TestPutLeavesNoTempFile(t *testing.T) {
	d := sftptest.StartSSHD(t)
	cfg := sshdConfig(t, d)
	s := dial(t, cfg)
	errSource := errors.New("source failed")
	r := io.MultiReader(bytes.NewReader(make([]byte, 3<<20)), &failingReader{errSource})
	if err := s.Put(t.Context(), "wal/seg", r); !errors.Is(err, errSource) {
		t.Fatalf("Put from a failing reader: got %v, want it wrapped", err)
	}
	if err := s.Put(t.Context(), "wal/seg", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "wal/seg", strings.NewReader("y")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Put over an existing file: got %v, want fs.ErrExist", err)
	}
	if got := hiddenFiles(t, filepath.Join(cfg.Path, "wal")); len(got) > 0 {
		t.Errorf("temporary files left after failed Puts: %q", got)
	}
}

type failingReader struct{ err error }

func (r *failingReader) Read([]byte) (int, error) { return 0, r.err }

func TestDialRootMissing(t *testing.T) {
	d := sftptest.StartSSHD(t)
	cfg := sshdConfig(t, d)
	cfg.Path = filepath.Join(cfg.Path, "typo")
	_, err := sftp.Dial(t.Context(), cfg)
	want := fmt.Sprintf("create it (ssh -p %d %s@127.0.0.1 mkdir -p %s)", d.Port, d.User, cfg.Path)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Dial to a missing directory: got %v, want it to say %q", err, want)
	}
	checkNotMissing(t, "Dial to a missing directory", err)
	if errors.Is(err, archive.ErrUnavailable) {
		t.Errorf("Dial to a missing directory: got %v, want an error that retrying does not fix", err)
	}
	if _, serr := os.Stat(cfg.Path); !errors.Is(serr, fs.ErrNotExist) {
		t.Errorf("the missing archive directory was created")
	}
}

// TestRootRemoved checks that Put does not recreate an archive directory
// that went away after Dial.
func TestRootRemoved(t *testing.T) {
	srv := sftptest.NewServer(t)
	s := dial(t, serverConfig(t, srv, "archive"))
	if err := os.Remove(filepath.Join(srv.Root, "archive")); err != nil {
		t.Fatal(err)
	}
	err := s.Put(t.Context(), "wal/seg", strings.NewReader("x"))
	if err == nil || !strings.Contains(err.Error(), "was it removed?") {
		t.Errorf("Put into a removed root: got %v, want it to ask whether it was removed", err)
	}
	checkNotMissing(t, "Put into a removed root", err)
	if _, err := os.Stat(filepath.Join(srv.Root, "archive")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Put recreated the removed archive directory")
	}
}

// TestReconnect drops the connection between calls: the next call dials
// again, and a missing file is still reported as missing.
func TestReconnect(t *testing.T) {
	srv := sftptest.NewServer(t)
	s := dial(t, serverConfig(t, srv, "archive"))
	ctx := t.Context()
	if err := s.Put(ctx, "wal/a", strings.NewReader("a")); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		srv.DropConnections()
		var err error
		for range 2 { // the call that finds the connection broken may fail
			if _, err = s.Stat(ctx, "wal/a"); err == nil {
				break
			}
			if !errors.Is(err, archive.ErrUnavailable) {
				t.Fatalf("drop %d: Stat: got %v, want nil or archive.ErrUnavailable", i, err)
			}
			checkNotMissing(t, "Stat on a dropped connection", err)
		}
		if err != nil {
			t.Fatalf("drop %d: Stat after reconnecting: %v", i, err)
		}
		if _, err := s.Stat(ctx, "wal/missing"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("drop %d: Stat of a missing file: got %v, want fs.ErrNotExist", i, err)
		}
	}
}

// TestServerDown stops sshd: calls fail with archive.ErrUnavailable, never
// as missing files, and work again, on the same Storage, once sshd is back.
func TestServerDown(t *testing.T) {
	d := sftptest.StartSSHD(t)
	cfg := sshdConfig(t, d)
	s := dial(t, cfg)
	ctx := t.Context()
	if err := s.Put(ctx, "wal/a", strings.NewReader("a")); err != nil {
		t.Fatal(err)
	}
	d.Stop(t)
	for range 3 {
		_, err := s.Stat(ctx, "wal/missing")
		if !errors.Is(err, archive.ErrUnavailable) {
			t.Errorf("Stat with sshd down: got %v, want archive.ErrUnavailable", err)
		}
		checkNotMissing(t, "Stat with sshd down", err)
		_, err = s.List(ctx, "wal")
		if !errors.Is(err, archive.ErrUnavailable) {
			t.Errorf("List with sshd down: got %v, want archive.ErrUnavailable", err)
		}
		r, err := s.Open(ctx, "wal/missing")
		if err == nil {
			r.Close()
		}
		checkNotMissing(t, "Open with sshd down", err)
	}
	d.Start(t)
	if _, err := s.Stat(ctx, "wal/a"); err != nil {
		t.Errorf("Stat after sshd came back: got %v, want nil", err)
	}
	if _, err := s.Stat(ctx, "wal/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a missing file after sshd came back: got %v, want fs.ErrNotExist", err)
	}
}

// TestPutConnectionDropped breaks the connection in the middle of a Put:
// nothing appears under the final name, and once connected again the
// Storage removes the temporary file and the next Put succeeds.
func TestPutConnectionDropped(t *testing.T) {
	d := sftptest.StartSSHD(t)
	proxy := sftptest.NewProxy(t, d.Addr)
	cfg := sshdConfig(t, d)
	cfg.Port = proxy.Port
	sftptest.WriteFile(t, cfg.KnownHostsFile, []byte(sftptest.KnownHostsLine(proxy.Addr, d.HostKey.PublicKey())))
	data := random(16 << 20)

	proxy.CutAfter(4 << 20)
	s := dial(t, cfg)
	err := s.Put(t.Context(), "wal/seg", bytes.NewReader(data))
	if !errors.Is(err, archive.ErrUnavailable) {
		t.Fatalf("Put over a connection cut half-way: got %v, want archive.ErrUnavailable", err)
	}
	walDir := filepath.Join(cfg.Path, "wal")
	if _, err := os.Stat(filepath.Join(walDir, "seg")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("file under the final name after a cut Put: %v", err)
	}

	proxy.CutAfter(0)
	if err := s.Put(t.Context(), "wal/seg", bytes.NewReader(data)); err != nil {
		t.Fatalf("Put after the cut: got %v, want nil", err)
	}
	got, err := os.ReadFile(filepath.Join(walDir, "seg"))
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("stored file: %d bytes, %v; want the %d bytes put", len(got), err, len(data))
	}
	if got := hiddenFiles(t, walDir); len(got) > 0 {
		t.Errorf("temporary files left after reconnecting: %q", got)
	}
}

// TestIOTimeout freezes the network: a call gives up after IOTimeout with
// archive.ErrUnavailable, and the next call, with the network back, works.
func TestIOTimeout(t *testing.T) {
	srv := sftptest.NewServer(t)
	proxy := sftptest.NewProxy(t, srv.Addr)
	cfg := serverConfig(t, srv, "archive")
	cfg.Port = proxy.Port
	cfg.IOTimeout = 500 * time.Millisecond
	cfg.DialTimeout = 500 * time.Millisecond
	sftptest.WriteFile(t, cfg.KnownHostsFile, []byte(sftptest.KnownHostsLine(proxy.Addr, srv.HostKey.PublicKey())))
	s := dial(t, cfg)
	ctx := t.Context()

	proxy.Freeze()
	start := time.Now()
	_, err := s.Stat(ctx, "missing")
	if !errors.Is(err, archive.ErrUnavailable) || !strings.Contains(err.Error(), "no answer from the server for 500ms") {
		t.Errorf("Stat on a frozen network: got %v, want archive.ErrUnavailable saying no answer for 500ms", err)
	}
	checkNotMissing(t, "Stat on a frozen network", err)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stat on a frozen network took %v, want about 500ms", d)
	}
	_, err = s.Stat(ctx, "missing")
	if !errors.Is(err, archive.ErrUnavailable) || !strings.Contains(err.Error(), "no answer within 500ms") {
		t.Errorf("Stat dialing on a frozen network: got %v, want archive.ErrUnavailable saying no answer within 500ms", err)
	}

	proxy.Thaw()
	if _, err := s.Stat(ctx, "missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat after the network came back: got %v, want fs.ErrNotExist", err)
	}

	// Frozen while the data goes.
	r := io.MultiReader(bytes.NewReader(random(2<<20)), freezer{proxy}, bytes.NewReader(random(4<<20)))
	start = time.Now()
	err = s.Put(ctx, "wal/seg", r)
	if !errors.Is(err, archive.ErrUnavailable) {
		t.Errorf("Put on a network frozen half-way: got %v, want archive.ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Put on a network frozen half-way took %v, want about 500ms", d)
	}
	proxy.Thaw()
	if err := s.Put(ctx, "wal/seg", strings.NewReader("x")); err != nil {
		t.Errorf("Put after the network came back: got %v, want nil", err)
	}
}

// freezer freezes a proxy when read, and reads as empty.
type freezer struct{ p *sftptest.Proxy }

func (f freezer) Read([]byte) (int, error) {
	f.p.Freeze()
	return 0, io.EOF
}

// TestSlowReaderNoTimeout checks that a Put whose source is slower than
// IOTimeout is not taken for a dead server.
func TestSlowReaderNoTimeout(t *testing.T) {
	srv := sftptest.NewServer(t)
	cfg := serverConfig(t, srv, "archive")
	cfg.IOTimeout = 200 * time.Millisecond
	s := dial(t, cfg)
	r := io.MultiReader(strings.NewReader("before"), slowReader(600*time.Millisecond), strings.NewReader("after"))
	if err := s.Put(t.Context(), "slow", r); err != nil {
		t.Fatalf("Put from a slow reader: got %v, want nil", err)
	}
}

// slowReader sleeps, then returns EOF.
type slowReader time.Duration

func (d slowReader) Read([]byte) (int, error) {
	time.Sleep(time.Duration(d))
	return 0, io.EOF
}

// TestCancelHung cancels a call that waits for a server that stopped
// answering: it returns at once.
func TestCancelHung(t *testing.T) {
	srv := sftptest.NewServer(t)
	proxy := sftptest.NewProxy(t, srv.Addr)
	cfg := serverConfig(t, srv, "archive")
	cfg.Port = proxy.Port
	cfg.IOTimeout = time.Minute
	sftptest.WriteFile(t, cfg.KnownHostsFile, []byte(sftptest.KnownHostsLine(proxy.Addr, srv.HostKey.PublicKey())))
	s := dial(t, cfg)
	proxy.Freeze()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Stat(ctx, "missing")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stat cancelled while the server hangs: got %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stat took %v after its ctx ended, want it to return at once", d)
	}
}

// TestReadConnectionDropped breaks the connection while a file is read: the
// read fails as unavailable, not as a short or missing file.
func TestReadConnectionDropped(t *testing.T) {
	srv := sftptest.NewServer(t)
	s := dial(t, serverConfig(t, srv, "archive"))
	if err := s.Put(t.Context(), "seg", bytes.NewReader(random(8<<20))); err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(t.Context(), "seg")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	srv.DropConnections()
	_, err = io.ReadAll(r)
	if !errors.Is(err, archive.ErrUnavailable) {
		t.Errorf("read after the connection dropped: got %v, want archive.ErrUnavailable", err)
	}
	checkNotMissing(t, "read after the connection dropped", err)
}

func TestOneConnection(t *testing.T) {
	d := sftptest.StartSSHD(t)
	s := dial(t, sshdConfig(t, d))
	for i := range 20 {
		if err := s.Put(t.Context(), fmt.Sprintf("wal/%d", i), strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.List(t.Context(), "wal"); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(d.Log(), "Accepted publickey"); n != 1 {
		t.Errorf("sshd accepted %d logins for 40 calls, want 1", n)
	}
}

func TestClose(t *testing.T) {
	srv := sftptest.NewServer(t)
	s := dial(t, serverConfig(t, srv, "archive"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Stat(t.Context(), "x")
	if !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Stat after Close: got %v, want fs.ErrClosed", err)
	}
}

func TestString(t *testing.T) {
	for _, tt := range []struct {
		cfg  sftp.Config
		want string
	}{
		{sftp.Config{Host: "db1", User: "postgres", Path: "/srv/walship"}, "sftp://postgres@db1/srv/walship"},
		{sftp.Config{Host: "db1", Port: 2222, Path: "walship"}, "sftp://db1:2222/~/walship"},
		{sftp.Config{Host: "::1", Port: 22, Path: "/a b"}, "sftp://[::1]/a%20b"},
	} {
		s, err := sftp.New(tt.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.String(); got != tt.want {
			t.Errorf("String() of %+v: got %q, want %q", tt.cfg, got, tt.want)
		}
	}
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

// TestRootPaths puts into archives at the server's root directory and at
// the login directory, whose names join differently.
func TestRootPaths(t *testing.T) {
	for _, root := range []string{"/", "."} {
		t.Run(root, func(t *testing.T) {
			srv := sftptest.NewServer(t)
			cfg := serverConfig(t, srv, "")
			cfg.Path = root
			s := dial(t, cfg)
			for _, name := range []string{"top", "wal/x/seg"} {
				if err := s.Put(t.Context(), name, strings.NewReader(name)); err != nil {
					t.Fatalf("Put(%q): %v", name, err)
				}
				if b, err := os.ReadFile(filepath.Join(srv.Root, name)); err != nil || string(b) != name {
					t.Errorf("%s on the server: got %q, %v; want %q", name, b, err, name)
				}
			}
		})
	}
}
