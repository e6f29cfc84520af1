package backup

import (
	"testing"

	"github.com/walship/walship/wal"
)

func TestUsable(t *testing.T) {
	// Timeline 3 left 2 at 0/5000000, which left 1 at 0/3000000.
	hist3 := []wal.HistoryEntry{{TLI: 1, Switch: 0x3000000}, {TLI: 2, Switch: 0x5000000}}
	for _, tc := range []struct {
		what   string
		tli    wal.TimeLine
		stop   wal.LSN
		target wal.TimeLine
		hist   []wal.HistoryEntry
		want   bool
	}{
		{"on the target timeline", 3, 0x6000000, 3, hist3, true},
		{"on an ancestor, ending before it was left", 1, 0x2000000, 3, hist3, true},
		{"on an ancestor, ending at the switch", 2, 0x5000000, 3, hist3, true},
		{"on an ancestor, ending after it was left (a later backup of the old primary)", 1, 0x4000000, 3, hist3, false},
		{"on a timeline not in the history (a fork)", 4, 0x1000000, 3, hist3, false},
		{"on a later timeline", 3, 0x1000000, 2, hist3[:1], false},
		{"timeline 1, target 1", 1, 0x9000000, 1, nil, true},
	} {
		m := Meta{ID: tc.what, StartTimeline: tc.tli, StopTimeline: tc.tli, StopLSN: tc.stop}
		if got := Usable(m, tc.target, tc.hist); got != tc.want {
			t.Errorf("%s: Usable = %v, want %v", tc.what, got, tc.want)
		}
	}
	all := []Meta{{ID: "a", StopTimeline: 1, StopLSN: 0x2000000}, {ID: "b", StopTimeline: 1, StopLSN: 0x4000000}}
	if got := onTimeline(all, 3, hist3); len(got) != 1 || got[0].ID != "a" {
		t.Errorf("onTimeline: %v, want only a", got)
	}
	if got := onTimeline(all, 0, nil); len(got) != 2 {
		t.Errorf("onTimeline(current): %v, want all", got)
	}
}
