package shipper

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/walship/walship/archive"
)

// A server that archives WAL of a timeline past the point where a newer
// timeline left it (a failed-over old primary, the source of a PITR that
// archives into the same archive) gets a loud warning on each such push,
// and its push still succeeds; WAL before the fork, and WAL of the newer
// timelines, pushes quietly.
func TestPushWarnsOfDivergedTimeline(t *testing.T) {
	f := newFixture(t)
	var logs bytes.Buffer
	p := &Pusher{Storage: f.st, Compression: archive.None, SystemID: testSysID, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	push := func(name string, b []byte) string {
		t.Helper()
		logs.Reset()
		if err := p.Push(context.Background(), f.file(name, b), name); err != nil {
			t.Fatalf("push %s: %v", name, err)
		}
		return logs.String()
	}
	for seg := uint64(1); seg <= 3; seg++ {
		if out := push(segName(1, seg), fakeSegment(t, testSysID, 1, seg, 100+seg)); strings.Contains(out, "DIVERGED") {
			t.Errorf("timeline 1 segment %d, no newer timeline yet: warned\n%s", seg, out)
		}
	}
	// Timeline 2 leaves timeline 1 inside segment 3 (1 MiB segments), and
	// timeline 3 leaves timeline 2 at the start of segment 5.
	push("00000002.history", []byte("1\t0/30A000\tno recovery target specified\n"))
	push("00000003.history", []byte("1\t0/30A000\tno recovery target specified\n2\t0/500000\tno recovery target specified\n"))

	for _, tc := range []struct {
		tli  uint32
		seg  uint64
		warn string // the newer timeline named, or "" for no warning
	}{
		{1, 3, ""},                 // holds the fork: re-push of what was there
		{1, 4, "newer_timeline=2"}, // wholly after timeline 2 left
		{2, 4, ""},                 // timeline 2 itself, before timeline 3 left it
		{2, 5, "newer_timeline=3"},
		{3, 5, ""},
	} {
		out := push(segName(tc.tli, tc.seg), fakeSegment(t, testSysID, tc.tli, tc.seg, uint64(tc.tli)*100+tc.seg))
		warned := strings.Contains(out, "TWO SERVERS ARCHIVE DIVERGED TIMELINES")
		if warned != (tc.warn != "") || tc.warn != "" && !strings.Contains(out, tc.warn) {
			t.Errorf("timeline %d segment %d: log\n%s\nwant a warning naming %q", tc.tli, tc.seg, out, tc.warn)
		}
	}
	// A re-push of a diverged segment is a retry: no second warning.
	name := segName(1, 4)
	if out := push(name, f.archived(name)); strings.Contains(out, "DIVERGED") {
		t.Errorf("identical re-push warned again:\n%s", out)
	}
}
