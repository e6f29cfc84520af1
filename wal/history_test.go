package wal

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseHistory(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []HistoryEntry
	}{
		{"empty", "", nil},
		{"comments and blank lines only", "# nothing\n\n   \n\t# indented comment\n", nil},
		{"one entry", "1\t0/B000A0\tno recovery target specified\n",
			[]HistoryEntry{{1, 0xB000A0, "no recovery target specified"}}},
		{"as the server appends", "1\t0/B000A0\tno recovery target specified\n\n2\t0/C000A0\tno recovery target specified\n",
			[]HistoryEntry{{1, 0xB000A0, "no recovery target specified"}, {2, 0xC000A0, "no recovery target specified"}}},
		{"no final newline", "1\t0/3000000\tbefore 2024-01-01 00:00:00+00",
			[]HistoryEntry{{1, 0x3000000, "before 2024-01-01 00:00:00+00"}}},
		{"CRLF", "1\t0/3000000\tat restore point \"x\"\r\n",
			[]HistoryEntry{{1, 0x3000000, `at restore point "x"`}}},
		{"no reason", "1\t16/B374D848\n3\t17/0",
			[]HistoryEntry{{1, 0x16_B374D848, ""}, {3, 0x17_00000000, ""}}},
		{"blanks instead of tabs", "  1  0/10 \t reason with\ttab  \n",
			[]HistoryEntry{{1, 0x10, "reason with\ttab"}}},
		{"PostgreSQL 18 padding, lower case", "1\t0/0000000a\tx\n", []HistoryEntry{{1, 0xA, "x"}}},
		{"gaps in timelines", "1\t0/1\ta\n5\t0/2\tb\n", []HistoryEntry{{1, 1, "a"}, {5, 2, "b"}}},
		{"largest timeline", "4294967295\t0/1\n", []HistoryEntry{{0xFFFFFFFF, 1, ""}}},
	}
	for _, tt := range tests {
		got, err := ParseHistory([]byte(tt.in))
		if err != nil {
			t.Errorf("%s: ParseHistory: %v", tt.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: ParseHistory: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestParseHistoryInvalid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"no LSN", "1\n", "line 1: want a switch LSN"},
		{"no LSN after tab", "1\t\n", "line 1: want a switch LSN"},
		{"bad LSN", "1\t0/XYZ\treason\n", `line 1: want a switch LSN after the timeline: invalid LSN "0/XYZ"`},
		{"LSN without slash", "1\t3000000\treason\n", "want a switch LSN"},
		{"LSN run into reason", "1\t0/1reason\n", "want a switch LSN"},
		{"hex timeline", "A\t0/1\n", `line 1: want a timeline ID in decimal, not "A"`},
		{"negative timeline", "-1\t0/1\n", "want a timeline ID"},
		{"signed timeline", "+1\t0/1\n", "want a timeline ID"},
		{"timeline 0", "0\t0/1\n", "want a timeline ID"},
		{"timeline too large", "4294967296\t0/1\n", "want a timeline ID"},
		{"text", "hello world\n", "want a timeline ID"},
		{"timelines repeat", "1\t0/1\ta\n\n1\t0/2\tb\n", "line 3: timeline 1 follows timeline 1"},
		{"timelines decrease", "2\t0/1\ta\n1\t0/2\tb\n", "line 2: timeline 1 follows timeline 2"},
		{"error after comments", "# c\n\n1\t0/1\n# c\nx\n", "line 5"},
	}
	for _, tt := range tests {
		got, err := ParseHistory([]byte(tt.in))
		if !errors.Is(err, ErrInvalidHistory) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ParseHistory(%q): got %+v, %v, want an ErrInvalidHistory error containing %q", tt.name, tt.in, got, err, tt.want)
		}
		if got != nil {
			t.Errorf("%s: ParseHistory(%q): got entries %+v with the error, want none", tt.name, tt.in, got)
		}
	}
}

func TestFormatHistory(t *testing.T) {
	entries := []HistoryEntry{{1, 0xB000A0, "no recovery target specified"}, {2, 0x1_0000000A, ""}}
	got := string(FormatHistory(entries))
	want := "1\t0/00B000A0\tno recovery target specified\n2\t1/0000000A\t\n"
	if got != want {
		t.Errorf("FormatHistory: got %q, want %q", got, want)
	}
	back, err := ParseHistory([]byte(got))
	if err != nil || !reflect.DeepEqual(back, entries) {
		t.Errorf("ParseHistory(FormatHistory(e)): got %+v, %v, want %+v", back, err, entries)
	}
	if got := FormatHistory(nil); len(got) != 0 {
		t.Errorf("FormatHistory(nil): got %q, want nothing", got)
	}
}
