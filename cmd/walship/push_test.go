package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walship/walship/internal/pgtest"
)

// segment returns a 1 MiB segment with a valid long page header.
func segment(sysid uint64, segno uint64, fill byte) []byte {
	const size = 1 << 20
	b := bytes.Repeat([]byte{fill}, size)
	copy(b, make([]byte, 64))
	binary.LittleEndian.PutUint16(b[0:], 0xD110)
	binary.LittleEndian.PutUint16(b[2:], 0x0002)
	binary.LittleEndian.PutUint32(b[4:], 1)
	binary.LittleEndian.PutUint64(b[8:], segno*size)
	binary.LittleEndian.PutUint64(b[24:], sysid)
	binary.LittleEndian.PutUint32(b[32:], size)
	binary.LittleEndian.PutUint32(b[36:], 8192)
	return b
}

func walshipRun(t *testing.T, args ...string) (code int, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"walship"}, args...), &out, &errb)
	return code, errb.String()
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestPushExitCodes(t *testing.T) {
	arch, src := t.TempDir(), t.TempDir()
	name := "000000010000000000000003"
	p := filepath.Join(src, name)
	if err := os.WriteFile(p, segment(42, 3, 7), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stderr := walshipRun(t, "push", "--archive", arch, p, name); code != 0 {
		t.Fatalf("push: exit %d, %s", code, stderr)
	}
	if code, stderr := walshipRun(t, "push", "--archive", arch, p, name); code != 0 {
		t.Errorf("identical re-push: exit %d, %s", code, stderr)
	}
	other := filepath.Join(src, "other")
	if err := os.WriteFile(other, segment(42, 3, 8), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr := walshipRun(t, "push", "--archive", arch, other, name)
	if code != exitFailed || !strings.Contains(stderr, "different file is archived") {
		t.Errorf("conflicting push: exit %d, stderr %q; want 1 and a conflict message", code, stderr)
	}
	foreign := filepath.Join(src, "foreign")
	if err := os.WriteFile(foreign, segment(43, 4, 7), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr = walshipRun(t, "push", "--archive", arch, foreign, "000000010000000000000004")
	if code != exitFailed || !strings.Contains(stderr, "system identifier 43") {
		t.Errorf("foreign push: exit %d, stderr %q; want 1 naming the system identifier", code, stderr)
	}
	for _, args := range [][]string{
		{"push", "--archive", arch, p, "../../etc/passwd"},
		{"push", "--archive", arch, p, "000000010000000000000003/../x"},
		{"push", "--archive", arch, p},
		{"push", p, name},                                         // no archive
		{"push", "--archive", "relative/dir", p, name},            // not absolute
		{"push", "--archive", arch, "--compress", "lz9", p, name}, // unknown compression
		{"push", "--archive", arch, "--no-such-flag", p, name},    // unknown flag
	} {
		if code, stderr := walshipRun(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (usage); stderr %q", args, code, exitUsage, stderr)
		}
	}
	if got := listDir(t, filepath.Join(arch, "wal")); len(got) != 1 || got[0] != name+".zst" {
		t.Errorf("archive wal/ holds %v, want only %s.zst", got, name)
	}
}

func TestPushMissingArchiveDir(t *testing.T) {
	src := t.TempDir()
	name := "000000010000000000000003"
	p := filepath.Join(src, name)
	if err := os.WriteFile(p, segment(42, 3, 7), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr := walshipRun(t, "push", "--archive", filepath.Join(src, "absent"), p, name)
	if code != exitFailed || !strings.Contains(stderr, "does not exist") {
		t.Errorf("exit %d, stderr %q; want 1 and a message that the archive does not exist", code, stderr)
	}
}

// A full archive file system fails the push and leaves no file behind.
func TestPushFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("this test mounts a tmpfs and must run as root in CI")
		}
		t.Skip("mounting a small tmpfs needs root")
	}
	arch := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", arch).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", arch).Run() })
	src := t.TempDir()
	// Two incompressible segments do not fit in 1.5 MiB.
	var code int
	var stderr string
	for i := uint64(1); i <= 2; i++ {
		name := "00000001000000000000000" + string(rune('0'+i))
		b := segment(42, i, 0)
		for j := 64; j < len(b); j++ {
			b[j] = byte(j*7919>>3) ^ byte(j>>11*31) ^ byte(i)
		}
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		code, stderr = walshipRun(t, "push", "--archive", arch, "--compress", "none", p, name)
	}
	if code != exitFailed || !strings.Contains(stderr, "full") {
		t.Fatalf("second push into a full archive: exit %d, stderr %q; want 1 and a message that the archive is full", code, stderr)
	}
	if got := listDir(t, filepath.Join(arch, "wal")); strings.Join(got, " ") != "000000010000000000000001 000000010000000000000001.xxh64" {
		t.Errorf("wal/ holds %v, want only the first segment and its checksum (no temp file, no partial second)", got)
	}
}

// PostgreSQL's call for a segment a look-ahead push shipped answers from
// the mark left on the segment, without opening the archive: here the
// archive is gone by then (on SFTP, the login is skipped). A segment the
// look-ahead did not ship still needs the archive.
func TestPushShippedAheadAnswersWithoutArchive(t *testing.T) {
	pgdata := t.TempDir()
	writeControl(t, pgdata, 42)
	pgwal := filepath.Join(pgdata, "pg_wal")
	if err := os.MkdirAll(filepath.Join(pgwal, "archive_status"), 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.NeedUserXattrs(t, pgwal)
	for i := uint64(1); i <= 3; i++ {
		name := "00000001000000000000000" + string(rune('0'+i))
		if err := os.WriteFile(filepath.Join(pgwal, name), segment(42, i, byte(i)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pgwal, "archive_status", name+".ready"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	arch := filepath.Join(t.TempDir(), "archive")
	if err := os.Mkdir(arch, 0o700); err != nil {
		t.Fatal(err)
	}
	seg := func(i int) (string, string) {
		name := "00000001000000000000000" + string(rune('0'+i))
		return filepath.Join(pgwal, name), name
	}
	p1, n1 := seg(1)
	if code, stderr := walshipRun(t, "push", "--archive", arch, "--pgdata", pgdata, "--look-ahead", "1", p1, n1); code != 0 {
		t.Fatalf("push --look-ahead 1: exit %d: %s", code, stderr)
	}
	if got := strings.Join(listDir(t, filepath.Join(arch, "wal")), " "); got != n1+".zst "+"000000010000000000000002.zst" {
		t.Fatalf("wal/ holds %s, want segments 1 and 2", got)
	}
	if err := os.Rename(arch, arch+".gone"); err != nil {
		t.Fatal(err)
	}
	p2, n2 := seg(2)
	if code, stderr := walshipRun(t, "push", "--archive", arch, "--pgdata", pgdata, p2, n2); code != 0 || !strings.Contains(stderr, "shipped ahead") {
		t.Errorf("push of the segment shipped ahead, archive gone: exit %d, stderr %q; want 0, answered from its mark", code, stderr)
	}
	p3, n3 := seg(3)
	if code, _ := walshipRun(t, "push", "--archive", arch, "--pgdata", pgdata, p3, n3); code == 0 {
		t.Error("push of a segment not shipped ahead, archive gone: exit 0, want a failure")
	}
	// Another --archive is another archive: the mark does not answer.
	if code, _ := walshipRun(t, "push", "--archive", arch+"-other", "--pgdata", pgdata, p2, n2); code == 0 {
		t.Error("push of the segment shipped ahead into another (missing) archive: exit 0, want a failure")
	}
}
