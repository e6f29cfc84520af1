package backup

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A backup from a standby that waits for its last segment says at once, and
// again when it gives up, that an idle primary archives it only at its
// archive_timeout, and how to fix that; one from a primary does not blame
// the primary's archive_timeout.
func TestWaitWALNamesTheFix(t *testing.T) {
	for _, fromStandby := range []bool{true, false} {
		st := testArchive(t)
		putSegments(t, st, 1, 1, 2)
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		names := []string{"000000010000000000000002", "000000010000000000000003"}
		err := waitWAL(context.Background(), st, names, fromStandby,
			Options{WALTimeout: 300 * time.Millisecond, Poll: 20 * time.Millisecond}, log)
		if !errors.Is(err, ErrWALMissing) || !strings.Contains(err.Error(), "000000010000000000000003") {
			t.Fatalf("fromStandby=%v: got %v, want ErrWALMissing naming the missing segment", fromStandby, err)
		}
		for what, text := range map[string]string{"error": err.Error(), "log": logs.String()} {
			if got := strings.Contains(text, "archive_timeout"); got != fromStandby {
				t.Errorf("fromStandby=%v: %s names archive_timeout: %v, want %v:\n%s", fromStandby, what, got, fromStandby, text)
			}
		}
		if n := strings.Count(logs.String(), "waiting for"); n != 1 {
			t.Errorf("fromStandby=%v: %d waiting messages in 300ms, want 1 (then one every %v):\n%s", fromStandby, n, walWaitReport, &logs)
		}
	}
}

// The wait ends as soon as the last segment is archived.
func TestWaitWALEndsWhenArchived(t *testing.T) {
	st := testArchive(t)
	putSegments(t, st, 1, 1, 2)
	done := make(chan error, 1)
	go func() {
		done <- waitWAL(context.Background(), st, []string{"000000010000000000000003"}, true,
			Options{WALTimeout: time.Minute, Poll: 20 * time.Millisecond}, slog.New(slog.DiscardHandler))
	}()
	time.Sleep(100 * time.Millisecond)
	putSegments(t, st, 1, 3, 3)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waitWAL still waits 10s after the segment was archived")
	}
}
