package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/archive/crypt"
	"github.com/walship/walship/archive/local"
	"github.com/walship/walship/internal/pgtest"
)

// encryptedArchive is the key material of an encrypted archive: the
// standby's identity file (owned by the server's user, mode 0600) and its
// public key. The primary gets neither: it pushes with the public key the
// archive holds.
type encryptedArchive struct {
	bin       string
	identity  string // identity file the readers are given
	recipient string
}

// newEncryptedArchive makes a key with walship encryption keygen.
func newEncryptedArchive(t *testing.T) *encryptedArchive {
	t.Helper()
	e := &encryptedArchive{bin: pgtest.Walship(t)}
	e.identity = filepath.Join(pgtest.TempDir(t), "archive.key")
	e.recipient = e.keygen(t, e.identity)
	return e
}

// keygen writes a new identity file and returns its public key.
func (e *encryptedArchive) keygen(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command(e.bin, "encryption", "keygen", path).Output()
	if err != nil {
		t.Fatalf("walship encryption keygen: %v", err)
	}
	pgtest.Chown(t, path)
	return strings.TrimSpace(string(out))
}

// init encrypts the empty archive arch to the key.
func (e *encryptedArchive) init(t *testing.T, bin, arch string) {
	t.Helper()
	if out, err := exec.Command(bin, "encryption", "init", "--archive", arch, "-r", e.recipient).CombinedOutput(); err != nil {
		t.Fatalf("walship encryption init: %v\n%s", err, out)
	}
	pgtest.Chown(t, filepath.Join(arch, crypt.KeysDir))
	pgtest.Chown(t, filepath.Join(arch, crypt.KeysDir, "keys-000001.json"))
}

// readArgs are the arguments that give a reader the identity.
func (e *encryptedArchive) readArgs() string { return "--encryption-identity " + e.identity }

// assertAllEncrypted checks that every file of the archive except the few
// kept in the clear is an age file, and that no stored file holds a row's
// text.
func (e *encryptedArchive) assertAllEncrypted(t *testing.T, arch string) {
	t.Helper()
	n := 0
	filepath.WalkDir(arch, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		rel, _ := filepath.Rel(arch, p)
		b, _ := os.ReadFile(p)
		if crypt.Plain(filepath.ToSlash(rel)) {
			return nil
		}
		n++
		if !bytes.HasPrefix(b, []byte("age-encryption.org/v1\n")) {
			t.Errorf("%s is stored unencrypted in an encrypted archive", rel)
		}
		return nil
	})
	if n == 0 {
		t.Error("the archive holds no encrypted file")
	}
	t.Logf("%d files of the archive are encrypted", n)
}

// walshipOut runs walship as an operator and returns its combined output
// and error.
func walshipOut(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

// TestEncryptedWarmStandby: a primary without any private key archives
// into an encrypted archive, a pg_standby-mode standby with the key
// replays it, the key is rotated in the middle of the standby's life (new
// files go to the new key, the standby reads both), the old key's files
// are rewrapped until none needs it, and a smart failover has every row.
func TestEncryptedWarmStandby(t *testing.T) {
	enc := newEncryptedArchive(t)
	var p *warmPair
	p = newWarmPairStopped(t, warmOptions{
		prepare: func(arch string) { enc.init(t, enc.bin, arch) },
		restore: func(l string) string {
			return strings.Replace(l, " wait ", " wait "+enc.readArgs()+" ", 1)
		},
	})
	p.standby.StartNoWait(t)
	p.standby.WaitFor(t, "SELECT pg_is_in_recovery()", "t", 60*time.Second)
	p.insert(t, 0, 1000)
	p.standby.WaitFor(t, "SELECT count(*) FROM t", "1000", 60*time.Second)
	enc.assertAllEncrypted(t, p.arch)

	// An identical re-push is success, a different file under an archived
	// name refused, on a primary that cannot decrypt.
	seg := p.insert(t, 1000, 1100)
	segPath := filepath.Join(p.primary.DataDir, "pg_wal", seg)
	if _, err := os.Stat(segPath); err == nil {
		if out, err := walshipOut(p.bin, "push", "--archive", p.arch, segPath, seg); err != nil {
			t.Errorf("identical re-push into the encrypted archive: %v\n%s", err, out)
		}
	} else {
		// Recycled already; TestEncryptedBackends re-pushes for sure.
		t.Logf("%s left pg_wal before the re-push: not re-pushed here", seg)
	}

	// Rotation: a new key for new files; the standby's identity file gets
	// the new key beside the old one, and the old key is retired.
	newKey := filepath.Join(pgtest.TempDir(t), "new.key")
	newRecipient := enc.keygen(t, newKey)
	oldFP, newFP := crypt.Fingerprint(enc.recipient), crypt.Fingerprint(newRecipient)
	if out, err := walshipOut(p.bin, "encryption", "add-key", "--archive", p.arch, "-r", newRecipient, "--retire", oldFP); err != nil {
		t.Fatalf("walship encryption add-key: %v\n%s", err, out)
	}
	pgtest.Chown(t, filepath.Join(p.arch, crypt.KeysDir, "keys-000002.json"))
	oldKey, _ := os.ReadFile(enc.identity)
	newKeyText, _ := os.ReadFile(newKey)
	if err := os.WriteFile(enc.identity, append(oldKey, newKeyText...), 0o600); err != nil {
		t.Fatal(err)
	}
	p.insert(t, 1100, 2000)
	p.standby.WaitFor(t, "SELECT count(*) FROM t", "2000", 60*time.Second)

	// status lists the files that still need the old key.
	out, err := walshipOut(p.bin, "encryption", "status", "--archive", p.arch, "--key", oldFP)
	if err == nil || !strings.Contains(out, "needs rewrap") {
		t.Errorf("encryption status --key OLD right after the rotation: got %v, want a failure listing files\n%s", err, out)
	}
	if !strings.Contains(out, newFP) {
		t.Errorf("encryption status does not show the new key %s:\n%s", newFP, out)
	}
	// The newest segment needs the new key only.
	c := crypt.New(mustLocal(t, p.arch), crypt.Config{})
	h, err := c.FileHeader(context.Background(), "wal/"+p.primary.QueryValue(t, "SELECT last_archived_wal FROM pg_stat_archiver")+".zst")
	if err != nil || len(h.Keys) != 1 || h.Keys[0] != newFP {
		t.Errorf("the segment archived after the rotation: keys %v, %v; want only %s", h.Keys, err, newFP)
	}
	// Rewrap, with the standby running; then nothing needs the old key.
	if out, err := walshipOut(p.bin, "encryption", "rewrap", "--archive", p.arch, "--encryption-identity", enc.identity); err != nil {
		t.Fatalf("walship encryption rewrap: %v\n%s", err, out)
	}
	filepath.WalkDir(p.arch, func(path string, d fs.DirEntry, err error) error {
		if err == nil {
			pgtest.Chown(t, path)
		}
		return nil
	})
	if out, err := walshipOut(p.bin, "encryption", "status", "--archive", p.arch, "--key", oldFP); err != nil {
		t.Errorf("encryption status --key OLD after rewrap: %v\n%s", err, out)
	}
	// The standby can drop the old key now.
	if err := os.WriteFile(enc.identity, newKeyText, 0o600); err != nil {
		t.Fatal(err)
	}
	p.standby.Stop(t)
	p.insert(t, 2000, 3000)
	p.promote(t)
	p.standby.Start(t)
	p.standby.WaitFor(t, "SELECT pg_is_in_recovery()", "f", 90*time.Second)
	if got := p.standby.QueryValue(t, "SELECT count(*) FROM t"); got != "3000" {
		t.Errorf("promoted standby has %s rows, want all 3000 archived", got)
	}
	enc.assertAllEncrypted(t, p.arch)
}

func mustLocal(t *testing.T, dir string) *local.Storage {
	t.Helper()
	st, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestEncryptedRefusals: a tampered segment, a wrong key and a missing key
// each stop the standby (restore_command exit above 125), never promote
// it, with a message naming the cause.
func TestEncryptedRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		why  string
		// setup breaks the pair; it returns the restore_command arguments.
		setup func(t *testing.T, enc *encryptedArchive, p *warmPair) string
	}{
		{"flipped byte in a segment", "fails its authentication", func(t *testing.T, enc *encryptedArchive, p *warmPair) string {
			seg := p.insert(t, 1000, 2000)
			path := filepath.Join(p.arch, "wal", seg+".zst")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x10
			if err := os.WriteFile(path, b, 0o640); err != nil {
				t.Fatal(err)
			}
			return enc.readArgs()
		}},
		{"wrong key", "is encrypted to key", func(t *testing.T, enc *encryptedArchive, p *warmPair) string {
			p.insert(t, 1000, 2000)
			other := filepath.Join(pgtest.TempDir(t), "other.key")
			enc.keygen(t, other)
			return "--encryption-identity " + other
		}},
		{"no key", "give its identity file", func(t *testing.T, enc *encryptedArchive, p *warmPair) string {
			p.insert(t, 1000, 2000)
			return ""
		}},
		{"plaintext segment planted", "is not encrypted", func(t *testing.T, enc *encryptedArchive, p *warmPair) string {
			seg := p.insert(t, 1000, 2000)
			// The segment, decrypted, put back in the clear.
			dec := crypt.New(mustLocal(t, p.arch), crypt.Config{Identities: mustIDs(t, enc.identity)})
			rc, err := dec.Open(context.Background(), "wal/"+seg+".zst")
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			buf.ReadFrom(rc)
			rc.Close()
			if err := os.WriteFile(filepath.Join(p.arch, "wal", seg+".zst"), buf.Bytes(), 0o640); err != nil {
				t.Fatal(err)
			}
			return enc.readArgs()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := newEncryptedArchive(t)
			var args string
			p := newWarmPairStopped(t, warmOptions{
				prepare: func(arch string) { enc.init(t, enc.bin, arch) },
				restore: func(l string) string { return strings.Replace(l, " wait ", " wait {{ARGS}} ", 1) },
			})
			p.insert(t, 0, 1000)
			args = tc.setup(t, enc, p)
			conf := filepath.Join(p.standby.DataDir, "postgresql.conf")
			b, _ := os.ReadFile(conf)
			os.WriteFile(conf, bytes.ReplaceAll(b, []byte("{{ARGS}}"), []byte(args)), 0o600)
			pgtest.Chown(t, conf)
			from := len(serverLog(t, p.standby))
			startMayFail(t, p.standby)
			why := tc.why
			if tc.name == "wrong key" {
				why = "is encrypted to key " + crypt.Fingerprint(enc.recipient)
			}
			assertStoppedNotPromoted(t, p.standby, from, why)
			if got := serverLog(t, p.standby)[from:]; !strings.Contains(got, why) {
				t.Errorf("the standby's log does not say %q:\n%s", why, lastLines(got, 30))
			}
		})
	}
}

func mustIDs(t *testing.T, path string) crypt.Identities {
	t.Helper()
	ids, err := crypt.LoadIdentities(path)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestEncryptedTailFailover is TestTailFailoverLosesAtMostOneInterval on
// an encrypted archive: the tail daemon encrypts its increments with the
// public key, and the standby decrypts them at failover.
func TestEncryptedTailFailover(t *testing.T) {
	tailFailover(t, newEncryptedArchive(t))
}

// TestEncryptedBackupPITR: a backup taken without a private key into an
// encrypted archive, restored to a point in time with the key; a flipped
// byte in the backup's data is refused; verify needs the key and passes.
func TestEncryptedBackupPITR(t *testing.T) {
	enc := newEncryptedArchive(t)
	s := &backupSetup{bin: pgtest.Walship(t), arch: pgtest.TempDir(t)}
	enc.init(t, s.bin, s.arch)
	s.primary = pgtest.New(t, pgtest.Options{
		InitdbArgs: []string{"--wal-segsize=1"},
		Conf: []string{
			"archive_mode = on",
			fmt.Sprintf("archive_command = '%s push --archive %s %%p %%f'", s.bin, s.arch),
		},
	})
	p := s.primary
	p.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	p.Exec(t, "INSERT INTO t VALUES (0)")
	m := s.backup(t, p)
	var times []string
	for i := 1; i <= 3; i++ {
		p.Exec(t, fmt.Sprintf("INSERT INTO t VALUES (%d)", i))
		times = append(times, p.QueryValue(t, "SELECT clock_timestamp()"))
		time.Sleep(20 * time.Millisecond)
	}
	s.archiveAll(t)
	enc.assertAllEncrypted(t, s.arch)

	// Without the key, restore says which key it needs.
	dir := filepath.Join(t.TempDir(), "nokey")
	out, err := walshipOut(s.bin, "restore", "--archive", s.arch, "--pgdata", dir)
	if err == nil || !strings.Contains(out, crypt.Fingerprint(enc.recipient)) {
		t.Errorf("restore without the key: got %v, want a failure naming key %s\n%s", err, crypt.Fingerprint(enc.recipient), out)
	}
	if out, err := walshipOut(s.bin, "verify", "--archive", s.arch, enc.readArgsSlice()[0], enc.readArgsSlice()[1]); err != nil {
		t.Errorf("verify with the key: %v\n%s", err, out)
	}
	s.restoreRows(t, "0,1,2", append(enc.readArgsSlice(), "--target-time", times[1], "--target-action", "promote")...)
	s.restoreRows(t, "0,1,2,3", enc.readArgsSlice()...)

	// A flipped byte in the stored base backup: refused, nothing restored.
	files, _ := filepath.Glob(filepath.Join(s.arch, "backups", m.ID, "base.tar*"))
	if len(files) != 1 {
		t.Fatalf("backup %s: base tar files %v", m.ID, files)
	}
	b, _ := os.ReadFile(files[0])
	b[len(b)/2] ^= 1
	os.WriteFile(files[0], b, 0o640)
	dir = filepath.Join(t.TempDir(), "tampered")
	out, err = walshipOut(s.bin, append([]string{"restore", "--archive", s.arch, "--pgdata", dir}, enc.readArgsSlice()...)...)
	if err == nil || !strings.Contains(out, "authentication") {
		t.Errorf("restore of a tampered backup: got %v, want a failure naming the failed authentication\n%s", err, out)
	}
	if out, err := walshipOut(s.bin, "verify", "--archive", s.arch, enc.readArgsSlice()[0], enc.readArgsSlice()[1]); err == nil {
		t.Errorf("verify of a tampered backup: passed\n%s", out)
	}
}

func (e *encryptedArchive) readArgsSlice() []string {
	return []string{"--encryption-identity", e.identity}
}

// TestEncryptedBackends runs the encrypted path through a real sshd and a
// real S3 server: push without a key, identical re-push, a conflicting
// push refused, fetch with the key, fetch without it stopping recovery
// (exit 250), and a rotation whose rewrap replaces files in place.
func TestEncryptedBackends(t *testing.T) {
	for _, backend := range []string{"sftp", "s3"} {
		t.Run(backend, func(t *testing.T) {
			bin := pgtest.Walship(t)
			enc := newEncryptedArchive(t)
			var flags []string
			var stored func(name string) []byte
			switch backend {
			case "sftp":
				a := newSFTPArchive(t)
				flags = a.flags()
				stored = func(name string) []byte { b, _ := os.ReadFile(filepath.Join(a.dir, name)); return b }
			case "s3":
				a := newS3Archive(t) // sets WALSHIP_CONFIG
				st := a.storage(t)
				stored = func(name string) []byte {
					rc, err := st.Open(context.Background(), name)
					if err != nil {
						return nil
					}
					defer rc.Close()
					var buf bytes.Buffer
					buf.ReadFrom(rc)
					return buf.Bytes()
				}
			}
			// Flags go before the positional arguments: after the command
			// name, and before %p %f.
			run := func(args ...string) (int, string) {
				var words, pos []string
				for i, a := range args {
					if i > 0 && !strings.HasPrefix(a, "-") && !strings.HasPrefix(args[i-1], "-") && args[0] != "encryption" {
						pos = append(pos, a)
						continue
					}
					words = append(words, a)
				}
				if args[0] == "encryption" {
					words = append(words[:2:2], append(flags, words[2:]...)...)
				} else {
					words = append(words, flags...)
				}
				return sftpWalship(t, bin, append(words, pos...)...)
			}
			if code, out := run("encryption", "init", "-r", enc.recipient); code != 0 {
				t.Fatalf("encryption init: exit %d\n%s", code, out)
			}
			dir := t.TempDir()
			p1, n1, b1 := sftpSegment(t, dir, 1, 1<<20)
			other := bytes.Clone(b1)
			other[len(other)-10] ^= 1 // same page header, other content
			p2 := filepath.Join(dir, "other")
			if err := os.WriteFile(p2, other, 0o644); err != nil {
				t.Fatal(err)
			}
			for i, want := range []int{0, 0} {
				if code, out := run("push", p1, n1); code != want {
					t.Fatalf("push %d of %s: exit %d, want %d\n%s", i+1, n1, code, want, out)
				}
			}
			if code, out := run("push", p2, n1); code == 0 || !strings.Contains(out, "differs") {
				t.Errorf("a different file under an archived name: exit %d\n%s", code, out)
			}
			raw := stored("wal/" + n1 + ".zst")
			if len(raw) == 0 {
				raw = stored("wal/" + n1)
			}
			if !bytes.HasPrefix(raw, []byte("age-encryption.org/v1\n")) {
				t.Fatalf("the archived segment is not an age file: %q", raw[:min(len(raw), 40)])
			}
			out1 := filepath.Join(dir, "restored")
			if code, out := run("fetch", "--encryption-identity", enc.identity, n1, out1); code != 0 {
				t.Fatalf("fetch with the key: exit %d\n%s", code, out)
			}
			if got, _ := os.ReadFile(out1); !bytes.Equal(got, b1) {
				t.Error("fetch with the key restored other bytes")
			}
			if code, out := run("fetch", n1, filepath.Join(dir, "nokey")); code != 250 || !strings.Contains(out, crypt.Fingerprint(enc.recipient)) {
				t.Errorf("fetch without the key: exit %d, want 250 naming the key\n%s", code, out)
			}
			// Rotation and rewrap through the backend's Replace.
			newKey := filepath.Join(pgtest.TempDir(t), "new.key")
			newRecipient := enc.keygen(t, newKey)
			if code, out := run("encryption", "add-key", "-r", newRecipient, "--retire", crypt.Fingerprint(enc.recipient)); code != 0 {
				t.Fatalf("add-key: exit %d\n%s", code, out)
			}
			if code, out := run("encryption", "rewrap", "--encryption-identity", enc.identity); code != 0 {
				t.Fatalf("rewrap: exit %d\n%s", code, out)
			}
			if code, out := run("encryption", "status", "--key", crypt.Fingerprint(enc.recipient)); code != 0 {
				t.Errorf("status --key OLD after rewrap: exit %d\n%s", code, out)
			}
			out2 := filepath.Join(dir, "restored2")
			if code, out := run("fetch", "--encryption-identity", newKey, n1, out2); code != 0 {
				t.Fatalf("fetch with the new key alone after rewrap: exit %d\n%s", code, out)
			}
			if got, _ := os.ReadFile(out2); !bytes.Equal(got, b1) {
				t.Error("fetch after rewrap restored other bytes")
			}
			if code, out := run("push", p1, n1); code != 0 {
				t.Errorf("identical re-push after rewrap (digest kept): exit %d\n%s", code, out)
			}
		})
	}
}
