package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/sftp/sftptest"
	"github.com/walship/walship/internal/pgtest"
	"github.com/walship/walship/wal"
)

// sftpArchive is an archive directory on a real sshd on this host, with the
// key and known_hosts files copied where the PostgreSQL user can read them:
// walship push and wait run as that user and log in as the test's user.
type sftpArchive struct {
	sshd       *sftptest.SSHD
	dir        string // the archive root, as a local path
	identity   string
	knownHosts string
	creds      string // directory of identity and knownHosts
}

func newSFTPArchive(t *testing.T) *sftpArchive {
	t.Helper()
	d := sftptest.StartSSHD(t)
	a := &sftpArchive{sshd: d, dir: t.TempDir(), creds: pgtest.TempDir(t)}
	a.identity = filepath.Join(a.creds, "id_ed25519")
	a.knownHosts = filepath.Join(a.creds, "known_hosts")
	copyFile(t, d.IdentityFile, a.identity)
	copyFile(t, d.KnownHostsFile, a.knownHosts)
	pgtest.Chown(t, a.creds)
	return a
}

// url returns the archive's URL at port (the sshd's, or a proxy's).
func (a *sftpArchive) url(port int) string {
	return fmt.Sprintf("sftp://%s@127.0.0.1:%d%s", a.sshd.User, port, a.dir)
}

// flags are walship's flags for the archive.
func (a *sftpArchive) flags() []string {
	return []string{"--archive", a.url(a.sshd.Port), "--identity", a.identity, "--known-hosts", a.knownHosts}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// sftpWalship runs the walship binary and returns its exit code and stderr.
func sftpWalship(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String()
	}
	t.Fatalf("run walship: %v", err)
	return 0, ""
}

// sftpSegment writes a WAL segment of size bytes with a valid long page
// header and random content (which zstd cannot shrink) into dir, and returns
// its path, name and content.
func sftpSegment(t *testing.T, dir string, segno uint64, size int) (string, string, []byte) {
	t.Helper()
	b := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(segno)}).Read(b)
	clear(b[:64])
	magic, _ := wal.VersionMagic(15)
	binary.LittleEndian.PutUint16(b[0:], magic)
	binary.LittleEndian.PutUint16(b[2:], 0x0002) // XLP_LONG_HEADER
	binary.LittleEndian.PutUint32(b[4:], 1)      // timeline
	binary.LittleEndian.PutUint64(b[8:], segno*uint64(size))
	binary.LittleEndian.PutUint64(b[24:], 7300000000000000042)
	binary.LittleEndian.PutUint32(b[32:], uint32(size))
	binary.LittleEndian.PutUint32(b[36:], 8192)
	name := fmt.Sprintf("%08X%08X%08X", 1, segno/(0x100000000/uint64(size)), segno%(0x100000000/uint64(size)))
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, name, b
}

// sftpArchived returns the content of an archived WAL file, read from the
// archive directory directly.
func sftpArchived(t *testing.T, dir, name string) []byte {
	t.Helper()
	return archivedWAL(t, openLocal(t, dir), name)
}

// A primary archives over SFTP to a real sshd, a pg_standby-mode standby
// restores from there with walship wait, and a smart promotion ends
// recovery with every archived row.
func TestSFTPWarmStandby(t *testing.T) {
	a := newSFTPArchive(t)
	bin := pgtest.Walship(t)
	flags := strings.Join(a.flags(), " ")
	trigger := filepath.Join(pgtest.TempDir(t), "walship.trigger")
	primary := pgtest.New(t, pgtest.Options{
		InitdbArgs: []string{"--wal-segsize=1"},
		Conf: []string{
			"archive_mode = on",
			fmt.Sprintf("archive_command = '%s push %s %%p %%f'", bin, flags),
		},
	})
	primary.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	standby := pgtest.BaseBackup(t, primary, pgtest.Options{Conf: []string{
		fmt.Sprintf("restore_command = '%s wait %s --trigger %s --poll 200ms %%f %%p %%r'", bin, flags, trigger),
		fmt.Sprintf("recovery_end_command = 'rm -f %s'", trigger),
		"hot_standby = on",
		// The read-ahead of PostgreSQL 15+ blocks in the waiting
		// restore_command, leaving the segment before unapplied.
		"recovery_prefetch = off",
	}})
	standby.WriteFile(t, "recovery.signal", "")
	primary.SwitchWAL(t) // the backup ends in a segment not archived yet
	standby.StartNoWait(t)
	standby.WaitFor(t, "SELECT pg_is_in_recovery()", "t", 30*time.Second)

	insert := func(from, to int) {
		t.Helper()
		primary.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series($1::int, $2::int - 1) g", from, to)
		seg := primary.SwitchWAL(t)
		primary.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", seg, 30*time.Second)
	}
	insert(0, 1000)
	standby.WaitFor(t, "SELECT count(*) FROM t", "1000", 30*time.Second)
	if got := standby.QueryValue(t, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("standby: pg_is_in_recovery() = %s, want t", got)
	}

	insert(1000, 2000)
	out, err := exec.Command(bin, "promote", "--trigger", trigger).CombinedOutput()
	if err != nil {
		t.Fatalf("walship promote: %v\n%s", err, out)
	}
	standby.WaitFor(t, "SELECT pg_is_in_recovery()", "f", 30*time.Second)
	if got := standby.QueryValue(t, "SELECT count(*) FROM t"); got != "2000" {
		t.Errorf("promoted standby has %s rows, want all 2000 archived", got)
	}
	if _, err := os.Stat(trigger); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("trigger file still there after promotion (recovery_end_command): %v", err)
	}
	if got := primary.QueryValue(t, "SELECT failed_count FROM pg_stat_archiver"); got != "0" {
		t.Errorf("the primary's archiver failed %s times\n%s", got, primary.LogTail(40))
	}
	if _, err := os.Stat(filepath.Join(a.dir, archive.IdentityFile)); err != nil {
		t.Errorf("archive identity: %v", err)
	}
}

// A push whose connection breaks half-way fails, leaves nothing under the
// segment's name, and the next push succeeds.
func TestSFTPPushConnectionDropped(t *testing.T) {
	a := newSFTPArchive(t)
	bin := pgtest.Walship(t)
	proxy := sftptest.NewProxy(t, a.sshd.Addr)
	known := filepath.Join(a.creds, "known_hosts_proxy")
	sftptest.WriteFile(t, known, []byte(sftptest.KnownHostsLine(proxy.Addr, a.sshd.HostKey.PublicKey())))
	args := []string{"push", "--archive", a.url(proxy.Port), "--identity", a.identity, "--known-hosts", known}
	p, name, seg := sftpSegment(t, t.TempDir(), 1, 16<<20)

	proxy.CutAfter(4 << 20)
	code, stderr := sftpWalship(t, bin, append(args, p, name)...)
	if code != 1 || !strings.Contains(stderr, "connection to "+proxy.Addr+" lost") {
		t.Fatalf("push over a connection cut half-way: exit %d, %q; want 1 and a lost connection", code, stderr)
	}
	for _, suffix := range archive.Suffixes {
		if _, err := os.Stat(filepath.Join(a.dir, archive.WALPath(name, suffix))); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s%s exists after a failed push (stat: %v)", name, suffix, err)
		}
	}

	proxy.CutAfter(0)
	if code, stderr := sftpWalship(t, bin, append(args, p, name)...); code != 0 {
		t.Fatalf("push after the cut: exit %d, %s", code, stderr)
	}
	if got := sftpArchived(t, a.dir, name); !bytes.Equal(got, seg) {
		t.Errorf("archived segment differs from the pushed one")
	}
}

// A server with an unknown or changed host key is refused with a message
// saying how to fix it, and nothing is written.
func TestSFTPPushHostKeyRefused(t *testing.T) {
	a := newSFTPArchive(t)
	bin := pgtest.Walship(t)
	p, name, _ := sftpSegment(t, t.TempDir(), 1, 1<<20)
	other, _ := sftptest.NewKey(t)
	unknown := filepath.Join(a.creds, "known_hosts_empty")
	changed := filepath.Join(a.creds, "known_hosts_changed")
	sftptest.WriteFile(t, unknown, nil)
	sftptest.WriteFile(t, changed, []byte(sftptest.KnownHostsLine(a.sshd.Addr, other.PublicKey())))
	push := []string{"push", "--archive", a.url(a.sshd.Port), "--identity", a.identity}

	for _, tt := range []struct {
		name  string
		flags []string
		want  []string
	}{
		{"unknown", []string{"--known-hosts", unknown}, []string{
			"unknown host key",
			fmt.Sprintf("add the host key: ssh-keyscan -p %d 127.0.0.1 >> %s", a.sshd.Port, unknown),
		}},
		{"unknown accept-new with fingerprint", []string{"--known-hosts", unknown, "--host-key-fingerprint", "SHA256:" + strings.Repeat("A", 43)},
			[]string{"HOST KEY MISMATCH", "man-in-the-middle"}},
		{"changed", []string{"--known-hosts", changed}, []string{
			"HOST KEY HAS CHANGED",
			"man-in-the-middle",
			fmt.Sprintf("ssh-keygen -R '[127.0.0.1]:%d' -f %s", a.sshd.Port, changed),
		}},
		{"changed accept-new", []string{"--known-hosts", changed, "--host-key-policy", "accept-new"}, []string{"HOST KEY HAS CHANGED"}},
	} {
		code, stderr := sftpWalship(t, bin, append(append(push, tt.flags...), p, name)...)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1; %s", tt.name, code, stderr)
		}
		for _, w := range tt.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr %q, want it to contain %q", tt.name, stderr, w)
			}
		}
	}
	if entries, _ := os.ReadDir(a.dir); len(entries) > 0 {
		t.Errorf("the archive holds %d entries after refused logins, want none", len(entries))
	}
	if b, _ := os.ReadFile(changed); string(b) != sftptest.KnownHostsLine(a.sshd.Addr, other.PublicKey()) {
		t.Errorf("known_hosts with the changed key was modified: %q", b)
	}

	code, stderr := sftpWalship(t, bin, append(append(push, "--host-key-policy", "no"), p, name)...)
	if code != 2 || !strings.Contains(stderr, "never ignores host keys") {
		t.Errorf("--host-key-policy no: exit %d, %q; want 2 and a refusal", code, stderr)
	}
	// Trust on first use: the key is added, and the push goes through.
	code, stderr = sftpWalship(t, bin, append(append(push, "--known-hosts", unknown, "--host-key-policy", "accept-new"), p, name)...)
	if code != 0 {
		t.Fatalf("push with accept-new: exit %d, %s", code, stderr)
	}
	if b, _ := os.ReadFile(unknown); string(b) != sftptest.KnownHostsLine(a.sshd.Addr, a.sshd.HostKey.PublicKey()) {
		t.Errorf("known_hosts after accept-new: %q, want the server's key", b)
	}
}

// walship wait keeps waiting while the SSH server is down, and restores the
// segment once it is back.
func TestSFTPWaitServerDown(t *testing.T) {
	a := newSFTPArchive(t)
	bin := pgtest.Walship(t)
	src := t.TempDir()
	for segno := uint64(1); segno <= 2; segno++ {
		p, name, _ := sftpSegment(t, src, segno, 1<<20)
		if code, stderr := sftpWalship(t, bin, append(append([]string{"push"}, a.flags()...), p, name)...); code != 0 {
			t.Fatalf("push %s: exit %d, %s", name, code, stderr)
		}
	}
	_, name, seg := sftpSegment(t, t.TempDir(), 2, 1<<20)

	a.sshd.Stop(t)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	var stderr bytes.Buffer
	cmd := exec.Command(bin, append(append([]string{"wait"}, a.flags()...), "--poll", "200ms", "--ssh-timeout", "5s", name, dest)...)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	select {
	case err := <-exited:
		t.Fatalf("walship wait exited while the server was down: %v\n%s", err, stderr.String())
	case <-time.After(3 * time.Second):
	}
	a.sshd.Start(t)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("walship wait after the server came back: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("walship wait still waiting 30s after the server came back\n%s", stderr.String())
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, seg) {
		t.Errorf("restored segment differs from the archived one")
	}
	if !strings.Contains(stderr.String(), "archive unavailable, retrying") {
		t.Errorf("wait's log does not say it retried:\n%s", stderr.String())
	}
}
