package backup

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	want := time.Date(2026, 11, 22, 1, 15, 0, 123456000, time.UTC)
	for _, s := range []string{
		"2026-11-22 01:15:00.123456+00",
		"2026-11-22 02:15:00.123456+01",
		"2026-11-22 06:45:00.123456+05:30",
		"2026-11-22T01:15:00.123456Z",
		"2026-11-22T01:15:00.123456+00:00",
		"2026-11-22T02:15:00.123456+01",
		"2026-11-22 01:15:00.123456 UTC",
		"2026-11-22T01:15:00.123456789Z", // nanoseconds: dropped, never rounded up
		"@1795310100.123456",
		"1795310100.1234569",
	} {
		got, err := ParseTime(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "yesterday", "2026-11-22", "01:15:00", "2026-11-22 01:15:00", "2026-11-22 01:15:00 XYZ",
		"2026", "20261122", "@", "@12.5", "1795396500x"} {
		if _, err := ParseTime(s); err == nil {
			t.Errorf("ParseTime(%q): no error", s)
		}
	}
}

// Whatever form the target time is given in, it is written as the server
// prints a timestamptz, which every version reads back.
func TestTargetTimeWritten(t *testing.T) {
	for _, s := range []string{"2026-12-01T18:40:50.888368Z", "2026-12-01 19:40:50.888368+01", "@1796150450.888368"} {
		tg, err := NewTarget(TargetTime, s, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if want := "2026-12-01 18:40:50.888368+00"; tg.Value != want {
			t.Errorf("NewTarget(time, %q).Value = %q, want %q", s, tg.Value, want)
		}
	}
	tg, _ := NewTarget(TargetTime, "2026-12-01T18:40:00Z", "", "")
	if tg.Value != "2026-12-01 18:40:00+00" {
		t.Errorf("whole seconds: %q", tg.Value)
	}
}

func TestNewTarget(t *testing.T) {
	for _, tc := range []struct {
		kind, value, action, timeline string
		ok                            bool
	}{
		{"", "", "", "", true},
		{"", "", "", "latest", true},
		{"", "", "promote", "", false}, // an action needs a target
		{"time", "2026-11-22 01:15:00+00", "promote", "", true},
		{"time", "noon", "", "", false},
		{"lsn", "0/3000060", "pause", "current", true},
		{"lsn", "3000060", "", "", false},
		{"xid", "1234", "shutdown", "2", true},
		{"xid", "-1", "", "", false},
		{"name", "before_upgrade", "", "", true},
		{"name", "", "", "", false},
		{"name", strings.Repeat("x", 64), "", "", false},
		{"immediate", "", "promote", "", true},
		{"xid", "12", "stop", "", false},
		{"xid", "12", "", "newest", false},
		{"xid", "12", "", "0", false},
		{"tomorrow", "", "", "", false},
	} {
		_, err := NewTarget(tc.kind, tc.value, tc.action, tc.timeline)
		if (err == nil) != tc.ok {
			t.Errorf("NewTarget(%q, %q, %q, %q): got %v, want ok=%v", tc.kind, tc.value, tc.action, tc.timeline, err, tc.ok)
		}
	}
}

func TestChoose(t *testing.T) {
	at := func(s string) time.Time { tm, _ := time.Parse(time.RFC3339, s); return tm }
	backups := []Meta{
		{ID: "20261122T010000Z", StopTime: at("2026-11-22T01:00:10Z"), StopLSN: 0x3000100},
		{ID: "20261122T020000Z", StopTime: at("2026-11-22T02:00:10Z"), StopLSN: 0x5000100},
		{ID: "20261122T030000Z", StopTime: at("2026-11-22T03:00:10Z"), StopLSN: 0x7000100},
	}
	target := func(kind, value string) Target {
		tg, err := NewTarget(kind, value, "", "")
		if err != nil {
			t.Fatal(err)
		}
		return tg
	}
	for _, tc := range []struct {
		id     string
		target Target
		want   string // "" for ErrNoBackup
	}{
		{"", Target{}, "20261122T030000Z"},
		{"latest", target("xid", "5"), "20261122T030000Z"},
		{"20261122T010000Z", target("time", "2026-11-22 05:00:00+00"), "20261122T010000Z"},
		{"20261122T010001Z", Target{}, ""},
		{"", target("time", "2026-11-22 02:30:00+00"), "20261122T020000Z"},
		{"", target("time", "2026-11-22 02:00:10+00"), "20261122T010000Z"}, // the stop time is not before
		{"", target("time", "2026-11-22 01:00:05+00"), ""},
		{"", target("lsn", "0/5000100"), "20261122T020000Z"},
		{"", target("lsn", "0/50000FF"), "20261122T010000Z"},
		{"", target("lsn", "0/1000000"), ""},
		{"", target("immediate", ""), "20261122T030000Z"},
	} {
		m, err := Choose(backups, tc.id, tc.target)
		switch {
		case tc.want == "" && !errors.Is(err, ErrNoBackup):
			t.Errorf("Choose(%q, %v): got %s, %v; want ErrNoBackup", tc.id, tc.target.Value, m.ID, err)
		case tc.want != "" && (err != nil || m.ID != tc.want):
			t.Errorf("Choose(%q, %v): got %s, %v; want %s", tc.id, tc.target.Value, m.ID, err, tc.want)
		}
	}
	if _, err := Choose(nil, "", Target{}); !errors.Is(err, ErrNoBackup) {
		t.Errorf("Choose without backups: got %v, want ErrNoBackup", err)
	}
}
