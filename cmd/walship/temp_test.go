package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walship/walship/backup"
	"github.com/walship/walship/wal"
)

const tmpRandom = ".tmp.0123456789abcdef"

// leaveTemp leaves a temporary file in the archive directory arch, as a
// write killed age ago would, and returns its path in the archive.
func leaveTemp(t *testing.T, arch, dir, base string, size int, age time.Duration) string {
	t.Helper()
	p := dir + "/." + base + tmpRandom
	full := filepath.Join(arch, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(full), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	mt := time.Now().Add(-age)
	if err := os.Chtimes(full, mt, mt); err != nil {
		t.Fatal(err)
	}
	return p
}

func exists(t *testing.T, arch, p string) bool {
	t.Helper()
	_, err := os.Lstat(filepath.Join(arch, filepath.FromSlash(p)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// pushSegments pushes segments 3 to last of system 42 into arch.
func pushSegments(t *testing.T, arch string, last uint64) {
	t.Helper()
	src := t.TempDir()
	for seg := uint64(3); seg <= last; seg++ {
		name := wal.SegmentName(1, wal.SegNo(seg), 1<<20)
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, segment(42, seg, 7), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, stderr := walshipRun(t, "push", "--archive", arch, p, name); code != 0 {
			t.Fatalf("push %s: exit %d, %s", name, code, stderr)
		}
	}
}

// runOut runs walship and returns its exit code, stdout and stderr.
func runOut(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"walship"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// markRunning records backup id as running in arch, its marker renewed a
// minute ago.
func markRunning(t *testing.T, arch, id string) {
	t.Helper()
	m := backup.InProgress{Format: backup.InProgressFormat, ID: id, StartLSN: 0x3000028, StartTimeline: 1,
		StartWAL: "000000010000000000000003", Heartbeat: time.Now().Add(-time.Minute), Host: "db1", PID: 7}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	writeArchiveFile(t, arch, "backups/"+id+".started", []byte("{}"))
	writeArchiveFile(t, arch, "backups/"+id+"/inprogress-000001.json", b)
}

func writeArchiveFile(t *testing.T, arch, p string, b []byte) {
	t.Helper()
	full := filepath.Join(arch, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(full), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

func backupID(ago time.Duration) string { return time.Now().Add(-ago).UTC().Format("20060102T150405Z") }

func TestFileMode(t *testing.T) {
	old := syscall.Umask(0o077) // PostgreSQL's
	defer syscall.Umask(old)
	src := t.TempDir()
	name := "000000010000000000000003"
	p := filepath.Join(src, name)
	if err := os.WriteFile(p, segment(42, 3, 7), 0o600); err != nil {
		t.Fatal(err)
	}
	perm := func(arch, rel string) fs.FileMode {
		t.Helper()
		fi, err := os.Stat(filepath.Join(arch, rel))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	for _, tt := range []struct {
		args      []string
		env, conf string
		file, dir fs.FileMode
	}{
		{file: 0o640, dir: 0o750},
		{args: []string{"--file-mode", "0600"}, file: 0o600, dir: 0o700},
		{args: []string{"--file-mode", "644"}, file: 0o644, dir: 0o755},
		{env: "0600", file: 0o600, dir: 0o700},
		{conf: "file-mode: 0644\n", file: 0o644, dir: 0o755},
	} {
		arch := t.TempDir()
		t.Setenv("WALSHIP_FILE_MODE", tt.env)
		if tt.env == "" {
			os.Unsetenv("WALSHIP_FILE_MODE")
		}
		args := []string{"push", "--archive", arch}
		if tt.conf != "" {
			args = append([]string{"--config", writeConfig(t, tt.conf)}, args...)
		}
		args = append(append(args, tt.args...), p, name)
		if code, stderr := walshipRun(t, args...); code != 0 {
			t.Fatalf("%v: exit %d, %s", args, code, stderr)
		}
		for _, f := range []string{"walship.json", "wal/" + name + ".zst"} {
			if got := perm(arch, f); got != tt.file {
				t.Errorf("%v (env %q, config %q): %s has mode %04o, want %04o", tt.args, tt.env, tt.conf, f, got, tt.file)
			}
		}
		if got := perm(arch, "wal"); got != tt.dir {
			t.Errorf("%v (env %q, config %q): wal/ has mode %04o, want %04o", tt.args, tt.env, tt.conf, got, tt.dir)
		}
	}
	os.Unsetenv("WALSHIP_FILE_MODE")

	arch := t.TempDir()
	for _, bad := range []string{"0666", "0660", "0700", "0400", "4640", "rw-r-----", ""} {
		for _, cmd := range [][]string{{"push", "--archive", arch, p, name}, {"info", "--archive", arch}, {"cleanup", "--archive", arch, name}} {
			args := append([]string{cmd[0], "--file-mode", bad}, cmd[1:]...)
			if code, stderr := walshipRun(t, args...); code != exitUsage {
				t.Errorf("%v: exit %d (%s), want %d", args, code, stderr, exitUsage)
			}
		}
	}
	if got := listDir(t, arch); len(got) != 0 {
		t.Errorf("refused commands wrote %v", got)
	}
}

func TestInfoVerifyTempFiles(t *testing.T) {
	arch := t.TempDir()
	pushSegments(t, arch, 4)
	id := backupID(3 * time.Hour)
	leaveTemp(t, arch, "wal", "000000010000000000000005.zst", 1000, 3*time.Hour)
	leaveTemp(t, arch, "wal", "000000010000000000000006.zst", 24, 2*time.Hour)
	leaveTemp(t, arch, "backups/"+id, "base.tar.zst", 5000, 90*time.Minute)

	check := func(cmd string, s *backup.TempSummary) {
		t.Helper()
		if s == nil || s.Files != 3 || s.Bytes != 6024 || s.OldestAge < 3*3600-60 || s.OldestAge > 3*3600+60 || len(s.Dirs) != 2 {
			t.Fatalf("%s --json: temp_files %+v, want 3 files, 6024 bytes, the oldest 3h old, in 2 directories", cmd, s)
		}
		if d := s.Dirs[0]; d.Dir != "backups/"+id || d.Files != 1 || d.Bytes != 5000 {
			t.Errorf("%s --json: first directory %+v, want backups/%s with 1 file of 5000 bytes", cmd, d, id)
		}
		if d := s.Dirs[1]; d.Dir != "wal" || d.Files != 2 || d.Bytes != 1024 || d.OldestAge != s.OldestAge {
			t.Errorf("%s --json: second directory %+v, want wal with 2 files of 1024 bytes, the oldest", cmd, d)
		}
	}
	code, out, stderr := runOut(t, "info", "--archive", arch, "--json")
	if code != 0 {
		t.Fatalf("info --json: exit %d, %s", code, stderr)
	}
	var info struct {
		Timelines []backup.TimelineWAL `json:"timelines"`
		TempFiles *backup.TempSummary  `json:"temp_files"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("info --json: %v\n%s", err, out)
	}
	if len(info.Timelines) != 1 || info.Timelines[0].Segments != 2 {
		t.Errorf("info --json: timelines %+v, want the 2 segments pushed", info.Timelines)
	}
	check("info", info.TempFiles)

	code, out, stderr = runOut(t, "verify", "--archive", arch, "--json")
	if code != 0 {
		t.Fatalf("verify --json: exit %d, %s%s", code, out, stderr)
	}
	var ver verifyResult
	if err := json.Unmarshal([]byte(out), &ver); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, out)
	}
	if !ver.OK || ver.WALFiles != 2 {
		t.Errorf("verify --json: %+v, want ok with 2 WAL files: temporary files are no problem", ver)
	}
	check("verify", ver.TempFiles)

	for _, cmd := range []string{"info", "verify"} {
		code, out, stderr := runOut(t, cmd, "--archive", arch)
		if code != 0 {
			t.Fatalf("%s: exit %d, %s", cmd, code, stderr)
		}
		for _, want := range []string{"3 temporary files", "(5.9 KiB)", "oldest last written 3h0m ago",
			"backups/" + id + "/", "wal/ ", "1.0 KiB"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output lacks %q:\n%s", cmd, want, out)
			}
		}
	}

	empty := t.TempDir()
	pushSegments(t, empty, 3)
	if code, out, _ := runOut(t, "info", "--archive", empty); code != 0 || !strings.Contains(out, "no temporary files") {
		t.Errorf("info of an archive without temporary files: exit %d, output lacks %q:\n%s", code, "no temporary files", out)
	}
}

func TestCleanupTempFiles(t *testing.T) {
	arch := t.TempDir()
	pushSegments(t, arch, 6)
	running, dead := backupID(5*time.Hour), backupID(50*time.Hour)
	markRunning(t, arch, running)
	oldWAL := leaveTemp(t, arch, "wal", "000000010000000000000007.zst", 100, 2*time.Hour)
	youngWAL := leaveTemp(t, arch, "wal", "000000010000000000000008.zst", 10, 10*time.Minute)
	tail := leaveTemp(t, arch, "wal/000000010000000000000007.tail", "00000000-00001000.zst", 1, 3*time.Hour)
	ofRunning := leaveTemp(t, arch, "backups/"+running, "base.tar.zst", 1000, 4*time.Hour)
	youngBackup := leaveTemp(t, arch, "backups", dead+".json", 1, 90*time.Minute)
	ofDead := leaveTemp(t, arch, "backups/"+dead, "base.tar.zst", 2000, 40*time.Hour)

	code, out, stderr := runOut(t, "cleanup", "--archive", arch, "--dry-run", "--json", "000000010000000000000004")
	if code != 0 {
		t.Fatalf("cleanup --dry-run --json: exit %d, %s", code, stderr)
	}
	var res cleanupResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("cleanup --json: %v\n%s", err, out)
	}
	var got []string
	if res.TempFiles != nil {
		for _, f := range res.TempFiles.Removed {
			got = append(got, f.Path)
		}
	}
	want := []string{ofDead, oldWAL, tail} // by directory
	if !slices.Equal(got, want) || res.TempFiles.Kept != 3 || res.TempFiles.Bytes != 2101 {
		t.Fatalf("cleanup --dry-run --json: temp_files %+v, want %q removed (2101 bytes), 3 kept", res.TempFiles, want)
	}
	all := []string{oldWAL, youngWAL, tail, ofRunning, youngBackup, ofDead}
	for _, p := range all {
		if !exists(t, arch, p) {
			t.Errorf("cleanup --dry-run removed %s", p)
		}
	}
	code, out, stderr = runOut(t, "cleanup", "--archive", arch, "--dry-run", "000000010000000000000004")
	if code != 0 || !strings.Contains(out, "would remove "+oldWAL) || !strings.Contains(out, "would remove 3 temporary files") {
		t.Errorf("cleanup --dry-run: exit %d, output lacks the temporary files:\n%s%s", code, out, stderr)
	}

	if code, stderr := walshipRun(t, "cleanup", "--archive", arch, "--temp-age", "10s", "000000010000000000000004"); code != exitUsage {
		t.Errorf("cleanup --temp-age 10s: exit %d (%s), want %d", code, stderr, exitUsage)
	}
	code, out, stderr = runOut(t, "cleanup", "--archive", arch, "000000010000000000000004")
	if code != 0 || !strings.Contains(out, "removed 3 temporary files") {
		t.Fatalf("cleanup: exit %d, %s%s", code, out, stderr)
	}
	for _, p := range all {
		if want := !slices.Contains([]string{ofDead, tail, oldWAL}, p); exists(t, arch, p) != want {
			t.Errorf("after cleanup, %s exists: %v, want %v", p, !want, want)
		}
	}
	if got := listDir(t, filepath.Join(arch, "backups")); slices.Contains(got, dead) {
		t.Errorf("backups/ holds %v: the emptied directory of no backup should have gone", got)
	}
	if got, want := listDir(t, filepath.Join(arch, "wal")), []string{"." + "000000010000000000000008.zst" + tmpRandom,
		"000000010000000000000003.zst", // the running backup's start
		"000000010000000000000004.zst", "000000010000000000000005.zst", "000000010000000000000006.zst",
		"000000010000000000000007.tail"}; !slices.Equal(got, want) {
		t.Errorf("after cleanup wal/ holds %v, want %v", got, want)
	}

	// A shorter age takes the younger file of wal/; none under backups/
	// goes before --stale-after, nor ever while its backup runs.
	code, out, stderr = runOut(t, "cleanup", "--archive", arch, "--temp-age", "5m", "--json", "000000010000000000000004")
	if code != 0 {
		t.Fatalf("cleanup --temp-age 5m: exit %d, %s", code, stderr)
	}
	res = cleanupResult{}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.TempFiles.Removed) != 1 || res.TempFiles.Removed[0].Path != youngWAL || res.TempFiles.Kept != 2 ||
		res.TempFiles.Age != 300 || res.TempFiles.BackupAge != 7200 {
		t.Errorf("cleanup --temp-age 5m: temp_files %+v, want only %s removed", res.TempFiles, youngWAL)
	}
	code, out, _ = runOut(t, "cleanup", "--archive", arch, "--stale-after", "1h", "--temp-age", "5m", "--json", "000000010000000000000004")
	res = cleanupResult{}
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil {
		t.Fatal(code, err)
	}
	if len(res.TempFiles.Removed) != 1 || res.TempFiles.Removed[0].Path != youngBackup || !exists(t, arch, ofRunning) {
		t.Errorf("cleanup --stale-after 1h: temp_files %+v, want only %s removed, not %s", res.TempFiles, youngBackup, ofRunning)
	}
}

func TestExpireTempFiles(t *testing.T) {
	arch := t.TempDir()
	pushSegments(t, arch, 6)
	for i, id := range []string{backupID(30 * time.Hour), backupID(20 * time.Hour)} {
		seg := wal.SegNo(4 + i)
		m := backup.Meta{Format: backup.MetaFormat, ID: id, StartLSN: seg.Start(1<<20) + 0x28, StopLSN: seg.Start(1<<20) + 0x100,
			StartTimeline: 1, StopTimeline: 1, SystemID: 42, SegmentSize: 1 << 20,
			Archives: []backup.ArchiveFile{{Name: "base.tar.zst"}}, Manifest: "backup_manifest.zst"}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		writeArchiveFile(t, arch, "backups/"+id+".started", []byte("{}"))
		writeArchiveFile(t, arch, "backups/"+id+"/base.tar.zst", []byte("data"))
		writeArchiveFile(t, arch, "backups/"+id+".json", b)
	}
	expired := backupID(30 * time.Hour)
	inExpired := leaveTemp(t, arch, "backups/"+expired, "backup_manifest.zst", 10, 29*time.Hour)
	oldWAL := leaveTemp(t, arch, "wal", "000000010000000000000007.zst", 100, 2*time.Hour)
	young := leaveTemp(t, arch, "wal", "000000010000000000000008.zst", 10, 10*time.Minute)

	code, out, stderr := runOut(t, "expire", "--archive", arch, "--keep", "1", "--dry-run", "--json")
	if code != 0 {
		t.Fatalf("expire --dry-run --json: exit %d, %s", code, stderr)
	}
	var res expireResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("expire --json: %v\n%s", err, out)
	}
	var got []string
	for _, f := range res.TempFiles.Removed {
		got = append(got, f.Path)
	}
	if want := []string{inExpired, oldWAL}; !slices.Equal(got, want) || len(res.Backups) != 1 || res.Backups[0] != expired {
		t.Errorf("expire --dry-run --json: backups %v, temp_files %q; want [%s] and %q", res.Backups, got, expired, want)
	}
	if !exists(t, arch, inExpired) || !exists(t, arch, oldWAL) {
		t.Errorf("expire --dry-run removed temporary files")
	}
	code, out, stderr = runOut(t, "expire", "--archive", arch, "--keep", "1")
	if code != 0 || !strings.Contains(out, "removed 2 temporary files") {
		t.Fatalf("expire: exit %d, %s%s", code, out, stderr)
	}
	if exists(t, arch, inExpired) || exists(t, arch, oldWAL) || !exists(t, arch, young) {
		t.Errorf("after expire: want %s and %s gone, %s kept", inExpired, oldWAL, young)
	}
	if exists(t, arch, "backups/"+expired) {
		t.Errorf("after expire: backups/%s stays, want it gone with its last temporary file", expired)
	}
}
