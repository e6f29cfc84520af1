package wal

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseName(t *testing.T) {
	tests := []struct {
		in   string
		want Name
	}{
		{"000000010000000000000001", Name{Kind: Segment, TLI: 1, Log: 0, Seg: 1}},
		{"0000000A00000016000000B3", Name{Kind: Segment, TLI: 10, Log: 0x16, Seg: 0xB3}},
		{"FFFFFFFFFFFFFFFFFFFFFFFF", Name{Kind: Segment, TLI: 0xFFFFFFFF, Log: 0xFFFFFFFF, Seg: 0xFFFFFFFF}},
		{"00000001000000000000000B.partial", Name{Kind: Partial, TLI: 1, Seg: 0xB}},
		{"00000002.history", Name{Kind: History, TLI: 2}},
		{"FFFFFFFF.history", Name{Kind: History, TLI: 0xFFFFFFFF}},
		{"000000010000000000000002.00000028.backup", Name{Kind: Backup, TLI: 1, Seg: 2, Offset: 0x28}},
		{"000000030000001200000034.00FFFFF8.backup", Name{Kind: Backup, TLI: 3, Log: 0x12, Seg: 0x34, Offset: 0xFFFFF8}},
	}
	for _, tt := range tests {
		got, err := ParseName(tt.in)
		if err != nil {
			t.Errorf("ParseName(%q): got error %v, want %+v", tt.in, err, tt.want)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseName(%q): got %+v, want %+v", tt.in, got, tt.want)
		}
		if s := got.String(); s != tt.in {
			t.Errorf("ParseName(%q).String(): got %q, want the input", tt.in, s)
		}
	}
}

func TestParseNameInvalid(t *testing.T) {
	tests := []struct {
		in   string
		hint string // part of the message that tells the user what is wrong
	}{
		{"", "want a segment"},
		{"00000001000000000000001", "want a segment"},   // 23 digits
		{"0000000100000000000000001", "want a segment"}, // 25 digits
		{"00000001000000000000000b", "upper-case"},
		{"0000000a0000000000000001", "upper-case"},
		{"00000001000000000000000b.partial", "upper-case"},
		{"0000000a.history", "upper-case"},
		{"000000010000000000000002.0000002a.backup", "upper-case"},
		{"000000000000000000000001", "timeline 0"},
		{"00000000.history", "timeline 0"},
		{"000000000000000000000001.partial", "timeline 0"},
		{"000000000000000000000002.00000028.backup", "timeline 0"},
		{"pg_wal/000000010000000000000001", "not a path"},
		{"../00000001000000000000001", "not a path"},
		{`..\000000010000000000000001`, "not a path"},
		{"/000000010000000000000001", "not a path"},
		{"..", "want a segment"},
		{".", "want a segment"},
		{"000000010000000000000001 ", "want a segment"},
		{" 000000010000000000000001", "want a segment"},
		{"00000001 000000000000001", "want a segment"},
		{"000000010000000000000001\n", "want a segment"},
		{"00000001000000000000000G", "want a segment"},
		{"0x0000010000000000000001", "want a segment"},
		{"+00000010000000000000001", "want a segment"},
		{"000000010000000000000001.PARTIAL", "want a segment"},
		{"000000010000000000000001.partial.zst", "want a segment"},
		{"000000010000000000000001.zst", "want a segment"},
		{"000000010000000000000001.gz", "want a segment"},
		{"000000010000000000000001.", "want a segment"},
		{"000000010000000000000001.ready", "want a segment"},
		{"000000010000000000000001.done", "want a segment"},
		{"000000010000000000000001.history", "want a segment"},
		{"0000002.history", "want a segment"},
		{"000000002.history", "want a segment"},
		{"00000002.History", "want a segment"},
		{"00000002.history~", "want a segment"},
		{".history", "want a segment"},
		{"00000002", "want a segment"},
		{"000000010000000000000002.0000028.backup", "want a segment"},
		{"000000010000000000000002.000000028.backup", "want a segment"},
		{"000000010000000000000002_00000028.backup", "want a segment"},
		{"000000010000000000000002.00000028.backup.zst", "want a segment"},
		{"000000010000000000000002.00000028", "want a segment"},
		{"000000010000000000000002.backup", "want a segment"},
		{"RECOVERYXLOG", "want a segment"},
		{"RECOVERYHISTORY", "want a segment"},
		{"archive_status", "want a segment"},
		{"00000001000000000000000１", "want a segment"}, // a full-width digit
		{strings.Repeat("0", 200), "want a segment"},
	}
	for _, tt := range tests {
		got, err := ParseName(tt.in)
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("ParseName(%q): got %+v, %v, want an error wrapping ErrInvalidName", tt.in, got, err)
			continue
		}
		if got != (Name{}) {
			t.Errorf("ParseName(%q): got %+v with the error, want the zero Name", tt.in, got)
		}
		msg := err.Error()
		if !strings.Contains(msg, quote(tt.in)) {
			t.Errorf("ParseName(%q): got error %q, want it to quote the input", tt.in, msg)
		}
		if !strings.Contains(msg, tt.hint) {
			t.Errorf("ParseName(%q): got error %q, want it to mention %q", tt.in, msg, tt.hint)
		}
	}
}

func TestKindString(t *testing.T) {
	tests := []struct {
		k    Kind
		want string
	}{
		{Segment, "segment"},
		{History, "history"},
		{Backup, "backup"},
		{Partial, "partial"},
		{0, "Kind(0)"},
		{9, "Kind(9)"},
	}
	for _, tt := range tests {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("Kind(%d).String(): got %q, want %q", int(tt.k), got, tt.want)
		}
	}
}

func TestNameString(t *testing.T) {
	tests := []struct {
		n           Name
		want        string
		wantSegment string
	}{
		{Name{Kind: Segment, TLI: 1, Log: 2, Seg: 3}, "000000010000000200000003", "000000010000000200000003"},
		{Name{Kind: Partial, TLI: 1, Log: 2, Seg: 3}, "000000010000000200000003.partial", "000000010000000200000003"},
		{Name{Kind: Backup, TLI: 1, Log: 2, Seg: 3, Offset: 0x60}, "000000010000000200000003.00000060.backup", "000000010000000200000003"},
		{Name{Kind: History, TLI: 0x2A}, "0000002A.history", ""},
		{Name{}, "", ""},
		{Name{Kind: 7, TLI: 1}, "", ""},
	}
	for _, tt := range tests {
		if got := tt.n.String(); got != tt.want {
			t.Errorf("%+v.String(): got %q, want %q", tt.n, got, tt.want)
		}
		if got := tt.n.SegmentName(); got != tt.wantSegment {
			t.Errorf("%+v.SegmentName(): got %q, want %q", tt.n, got, tt.wantSegment)
		}
	}
}

func TestNameSegNo(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name    string
		segSize int64
		want    SegNo
		wantErr string // "" for success
	}{
		{"000000010000000000000001", 16 * mib, 1, ""},
		{"0000000100000000000000FF", 16 * mib, 0xFF, ""},
		{"000000010000000100000000", 16 * mib, 0x100, ""},
		{"0000000100000016000000B3", 16 * mib, 0x16B3, ""},
		{"000000010000000100000000", 1 * mib, 0x1000, ""},
		{"000000010000000000000FFF", 1 * mib, 0xFFF, ""},
		{"000000010000000300000003", 1024 * mib, 15, ""},
		{"FFFFFFFFFFFFFFFF000000FF", 16 * mib, 1<<40 - 1, ""},
		{"FFFFFFFFFFFFFFFF00000FFF", 1 * mib, 1<<44 - 1, ""},
		{"00000001000000000000000B.partial", 1 * mib, 0xB, ""},
		{"000000010000000000000002.00000028.backup", 16 * mib, 2, ""},
		{"000000010000000000000002.00FFFFFF.backup", 16 * mib, 2, ""},
		// Low parts and offsets that the segment size rules out.
		{"000000010000000000000100", 16 * mib, 0, "too large for 16 MiB segments (at most 000000FF)"},
		{"000000010000000000001000", 1 * mib, 0, "at most 00000FFF"},
		{"000000010000000000000004", 1024 * mib, 0, "at most 00000003"},
		{"0000000100000000FFFFFFFF", 1 * mib, 0, "too large"},
		{"00000001000000000000FFFF.partial", 16 * mib, 0, "too large"},
		{"000000010000000000000002.01000000.backup", 16 * mib, 0, "beyond the end of a 16 MiB segment"},
		{"000000010000000000000002.00100000.backup", 1 * mib, 0, "beyond the end"},
		// Names without a segment, and bad sizes.
		{"00000002.history", 16 * mib, 0, "a history file names no segment"},
		{"000000010000000000000001", 0, 0, "invalid segment size 0"},
		{"000000010000000000000001", 3 * mib, 0, "invalid segment size"},
		{"000000010000000000000001", 2048 * mib, 0, "invalid segment size"},
	}
	for _, tt := range tests {
		n, err := ParseName(tt.name)
		if err != nil {
			t.Fatalf("ParseName(%q): %v", tt.name, err)
		}
		got, err := n.SegNo(tt.segSize)
		if tt.wantErr == "" {
			if err != nil || got != tt.want {
				t.Errorf("%s.SegNo(%d): got %d, %v, want %d", tt.name, tt.segSize, got, err, tt.want)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s.SegNo(%d): got %d, %v, want an ErrInvalidName error containing %q", tt.name, tt.segSize, got, err, tt.wantErr)
		}
	}
	if _, err := (Name{}).SegNo(16 * mib); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Name{}.SegNo: got %v, want ErrInvalidName", err)
	}
}

// TestNameEveryKindRoundTrip builds names of every kind from segment numbers
// and parses them back, for every segment size.
func TestNameEveryKindRoundTrip(t *testing.T) {
	for _, size := range segmentSizes() {
		perID := SegmentsPerLogID(size)
		for _, seg := range []SegNo{0, 1, SegNo(perID - 1), SegNo(perID), SegNo(0x12345 * perID)} {
			plain := SegmentName(3, seg, size)
			for _, s := range []string{plain, plain + ".partial", fmt.Sprintf("%s.%08X.backup", plain, size-8)} {
				n, err := ParseName(s)
				if err != nil {
					t.Errorf("ParseName(%q): %v", s, err)
					continue
				}
				if n.String() != s || n.SegmentName() != plain || n.TLI != 3 {
					t.Errorf("ParseName(%q): got %+v (%q, segment %q), want it back", s, n, n.String(), n.SegmentName())
				}
				if got, err := n.SegNo(size); err != nil || got != seg {
					t.Errorf("ParseName(%q).SegNo(%d): got %d, %v, want %d", s, size, got, err, seg)
				}
			}
		}
	}
}
