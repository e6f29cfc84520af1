package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBackupCommandsUsage(t *testing.T) {
	arch := t.TempDir()
	pgdata := filepath.Join(t.TempDir(), "data")
	for _, args := range [][]string{
		{"restore", "--archive", arch},
		{"restore", "--archive", arch, "--pgdata", pgdata, "--target-xid", "1", "--target-name", "x"},
		{"restore", "--archive", arch, "--pgdata", pgdata, "--target-time", "noon"},
		{"restore", "--archive", arch, "--pgdata", pgdata, "--target-action", "promote"},
		{"restore", "--archive", arch, "--pgdata", pgdata, "--standby"},
		{"restore", "--archive", arch, "--pgdata", pgdata, "--standby", "--trigger", "/t", "--target-immediate"},
		{"restore", "--archive", arch, "--pgdata", pgdata, "--tablespace-map", "relative=/x"},
		{"restore", "--archive", arch, "--pgdata", pgdata, "extra"},
		{"backup", "--archive", arch, "--compress", "lz4"},
		{"backup", "--archive", arch, "--compress-on", "nowhere"},
		{"backup", "--archive", arch, "extra"},
		{"backup"},
		{"expire", "--archive", arch},
		{"expire", "--archive", arch, "--keep", "0"},
		{"info", "--archive", arch, "extra"},
		{"verify", "--no-such-flag"},
	} {
		var out bytes.Buffer
		code, err := backupApp(&out)(args...)
		if code != exitUsage {
			t.Errorf("%s: exit %d (%v), want %d", strings.Join(args, " "), code, err, exitUsage)
		}
	}
	if _, err := os.Stat(pgdata); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a usage error created the data directory")
	}
}

func TestRestoreNoBackup(t *testing.T) {
	arch := t.TempDir()
	var out bytes.Buffer
	code, err := backupApp(&out)("restore", "--archive", arch, "--pgdata", filepath.Join(t.TempDir(), "data"))
	if code != exitFailed || err == nil || !strings.Contains(err.Error(), "no complete backup") {
		t.Errorf("restore from an archive without backups: exit %d, %v", code, err)
	}
}

func TestSSHArgs(t *testing.T) {
	if got := sshArgs(sshOptions{HostKeyPolicy: "strict"}); len(got) != 0 {
		t.Errorf("defaults: got %q, want no flags", got)
	}
	got := strings.Join(sshArgs(sshOptions{Identities: []string{"/k1", "/k2"}, KnownHosts: "/kh",
		HostKeyPolicy: "accept-new", HostKeyFingerprint: "SHA256:x", Timeout: 3 * time.Second}), " ")
	want := "--identity /k1 --identity /k2 --known-hosts /kh --host-key-policy accept-new --host-key-fingerprint SHA256:x --ssh-timeout 3s"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A target time after the newest archived WAL gets a warning naming it.
func TestWarnTargetAfterWAL(t *testing.T) {
	arch, _, _ := archiveWith(t)
	st, err := openArchive(context.Background(), arch)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	warnTargetAfterWAL(context.Background(), st, time.Now().Add(-time.Hour), logger)
	if logs.Len() != 0 {
		t.Errorf("target before the newest WAL: %s", logs.String())
	}
	warnTargetAfterWAL(context.Background(), st, time.Now().Add(time.Hour), logger)
	if !strings.Contains(logs.String(), "after the newest archived WAL") || !strings.Contains(logs.String(), "000000010000000000000003") {
		t.Errorf("target after the newest WAL: %q, want a warning naming the newest segment", logs.String())
	}
}
