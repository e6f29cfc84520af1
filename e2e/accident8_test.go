package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Accident 8, found by fault injection: with no complete backup in the
// archive yet, a standby's archive_cleanup_command (walship cleanup %r, run
// at every restart point) removed the WAL of the first base backup while
// that backup still ran, and the backup then failed. cleanup kept only the
// WAL of complete backups. Now walship backup keeps an in-progress marker
// with its start, and cleanup keeps every segment from there on.
//
// The backup here is slowed down with --max-rate, and while it runs the
// primary archives more WAL and cleanup runs, again and again, with a %r
// past the backup's start. The backup must complete, and restore with every
// row.
func TestNoAccident8CleanupKeepsRunningBackup(t *testing.T) {
	s := newBackupSetup(t)
	p := s.primary
	p.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	p.Exec(t, "INSERT INTO t VALUES (1)")
	// About 40 MB to send at 2 MiB/s: the backup runs for some 20 seconds.
	p.Exec(t, "CREATE TABLE big AS SELECT g, repeat(md5(g::text), 3) AS pad FROM generate_series(1, 120000) g")
	s.archiveAll(t)

	// --stale-after 1m renews the marker every 15 seconds, during the backup.
	cmd := exec.Command(s.bin, "backup", "--archive", s.arch, "--dsn", p.ConnString(), "--fast-checkpoint", "--json",
		"--wal-timeout", "30s", "--compress-on", "client", "--max-rate", "2M", "--stale-after", "1m")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	finished := false
	t.Cleanup(func() {
		if !finished {
			cmd.Process.Kill()
			<-done
		}
	})

	// The marker appears once the server has named the start position.
	var id, startWAL string
	deadline := time.Now().Add(time.Minute)
	for id == "" {
		markers, _ := filepath.Glob(filepath.Join(s.arch, "backups", "*", "inprogress-*.json"))
		for _, m := range markers {
			var marker struct {
				ID       string `json:"id"`
				StartWAL string `json:"start_wal"`
			}
			if b, err := os.ReadFile(m); err == nil && json.Unmarshal(b, &marker) == nil {
				id, startWAL = marker.ID, marker.StartWAL
			}
		}
		select {
		case err := <-done:
			finished = true
			t.Fatalf("walship backup ended (%v) before its in-progress marker was seen:\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no in-progress marker after a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("backup %s in progress from %s", id, startWAL)

	// While it runs: commit, archive, clean up past the backup's start.
	rows := []string{"1"}
	cleanups, pastStart, listed := 0, 0, 0
	var backupErr error
	for !finished {
		select {
		case backupErr = <-done:
			finished = true
			continue
		default:
		}
		n := len(rows) + 1
		p.Exec(t, fmt.Sprintf("INSERT INTO t VALUES (%d)", n))
		rows = append(rows, fmt.Sprint(n))
		s.archiveAll(t)
		restart := p.QueryValue(t, "SELECT last_archived_wal FROM pg_stat_archiver")
		if cleanups%5 == 0 {
			// --dry-run --json names the backup in progress it keeps.
			out, err := exec.Command(s.bin, "cleanup", "--archive", s.arch, "--dry-run", "--json", restart).Output()
			if err != nil {
				t.Fatalf("walship cleanup --dry-run --json %s: %v", restart, err)
			}
			var res struct {
				InProgress []struct {
					ID    string `json:"id"`
					State string `json:"state"`
				} `json:"in_progress"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("cleanup --json printed %q: %v", out, err)
			}
			switch {
			case len(res.InProgress) == 1 && res.InProgress[0].ID == id && res.InProgress[0].State == "running":
				listed++
			case len(res.InProgress) != 0:
				t.Errorf("cleanup --dry-run --json lists %+v in progress, want backup %s running", res.InProgress, id)
			}
		}
		if out, err := s.walshipErr("cleanup", "--archive", s.arch, "--stale-after", "1m", restart); err != nil {
			t.Fatalf("walship cleanup %s: %v\n%s", restart, err, out)
		}
		cleanups++
		if restart[8:] > startWAL[8:] {
			pastStart++
		}
		if _, err := os.Stat(filepath.Join(s.arch, "wal", startWAL+".zst")); err != nil {
			t.Fatalf("after walship cleanup %s, the start segment of backup %s in progress: %v", restart, id, err)
		}
	}
	if backupErr != nil {
		t.Fatalf("walship backup, with cleanup running: %v\n%s", backupErr, stderr.String())
	}
	t.Logf("%d cleanups while the backup ran, %d of them past its start", cleanups, pastStart)
	if pastStart < 3 {
		t.Fatalf("only %d cleanups ran past the backup's start while it ran: the backup was too quick to test anything", pastStart)
	}
	if listed == 0 {
		t.Errorf("cleanup --dry-run --json never listed backup %s in progress", id)
	}
	var m backupMeta
	if err := json.Unmarshal([]byte(stdout.String()), &m); err != nil || m.ID != id || m.StartWAL != startWAL {
		t.Fatalf("walship backup --json printed %q (%v); want backup %s from %s", stdout.String(), err, id, startWAL)
	}
	if left, _ := filepath.Glob(filepath.Join(s.arch, "backups", id, "inprogress-*")); len(left) != 0 {
		t.Errorf("the complete backup kept its in-progress markers %v", left)
	}

	// Complete now: cleanup keeps its WAL as that of a complete backup.
	p.Exec(t, fmt.Sprintf("INSERT INTO t VALUES (%d)", len(rows)+1))
	rows = append(rows, fmt.Sprint(len(rows)+1))
	s.archiveAll(t)
	s.walship(t, "cleanup", "--archive", s.arch, p.QueryValue(t, "SELECT last_archived_wal FROM pg_stat_archiver"))
	if out := s.walship(t, "verify", "--archive", s.arch); !strings.Contains(out, " 0 problems") {
		t.Errorf("verify after cleanup:\n%s", out)
	}
	s.restoreRows(t, strings.Join(rows, ","))
}
