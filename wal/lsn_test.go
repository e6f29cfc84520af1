package wal

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseLSN(t *testing.T) {
	tests := []struct {
		in   string
		want LSN
	}{
		{"0/0", 0},
		{"0/1", 1},
		{"16/B374D848", 0x16_B374D848},
		{"16/b374d848", 0x16_B374D848},
		{"0/01000000", 0x1000000},
		{"00000000/00000000", 0},
		{"FFFFFFFF/FFFFFFFF", 1<<64 - 1},
		{"ffffffff/ffffffff", 1<<64 - 1},
		{"1/0", 1 << 32},
		{"Ab/Cd", 0xAB_000000CD},
	}
	for _, tt := range tests {
		got, err := ParseLSN(tt.in)
		if err != nil {
			t.Errorf("ParseLSN(%q): got error %v, want %s", tt.in, err, tt.want)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseLSN(%q): got %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParseLSNInvalid(t *testing.T) {
	for _, in := range []string{
		"", "/", "0", "0/", "/0", "16B374D848", "16/B374D848/0",
		"100000000/0", "0/100000000", // nine digits
		"0x16/B374D848", "-1/0", "+1/0", " 16/B374D848", "16/B374D848 ", "16 /B374D848",
		"16/B374D84G", "1_0/0", "16/B374D848\n", "１/0",
	} {
		got, err := ParseLSN(in)
		if !errors.Is(err, ErrInvalidLSN) {
			t.Errorf("ParseLSN(%q): got %s, %v, want an error wrapping ErrInvalidLSN", in, got, err)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("ParseLSN(%q): got error %q, want it to quote the input", in, err)
		}
	}
}

func TestLSNString(t *testing.T) {
	tests := []struct {
		in   LSN
		want string
	}{
		{0, "0/00000000"},
		{1, "0/00000001"},
		{0x16_B374D848, "16/B374D848"},
		{0x1000000, "0/01000000"},
		{1<<64 - 1, "FFFFFFFF/FFFFFFFF"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("LSN(%#x).String(): got %q, want %q", uint64(tt.in), got, tt.want)
		}
		back, err := ParseLSN(tt.want)
		if err != nil || back != tt.in {
			t.Errorf("ParseLSN(%q): got %#x, %v, want %#x", tt.want, uint64(back), err, uint64(tt.in))
		}
	}
}

func TestValidSegmentSize(t *testing.T) {
	tests := []struct {
		size int64
		want bool
	}{
		{0, false},
		{-1 << 20, false},
		{1 << 19, false},
		{1<<20 - 1, false},
		{1 << 20, true},
		{3 << 20, false},
		{16 << 20, true},
		{1 << 30, true},
		{1<<30 + 1, false},
		{1 << 31, false},
		{1 << 62, false},
		{-1 << 63, false},
	}
	for _, tt := range tests {
		if got := ValidSegmentSize(tt.size); got != tt.want {
			t.Errorf("ValidSegmentSize(%d): got %v, want %v", tt.size, got, tt.want)
		}
	}
}

// segmentSizes lists every segment size PostgreSQL accepts.
func segmentSizes() []int64 {
	var sizes []int64
	for s := int64(MinSegmentSize); s <= MaxSegmentSize; s *= 2 {
		sizes = append(sizes, s)
	}
	return sizes
}

func TestSegmentMathEverySize(t *testing.T) {
	if n := len(segmentSizes()); n != 11 {
		t.Fatalf("got %d segment sizes, want 11 (1 MiB to 1 GiB)", n)
	}
	for _, size := range segmentSizes() {
		t.Run(formatSize(size), func(t *testing.T) {
			perID := SegmentsPerLogID(size)
			if want := uint64(1<<32) / uint64(size); perID != want {
				t.Fatalf("SegmentsPerLogID: got %d, want %d", perID, want)
			}
			last := SegNo((1<<64 - 1) / uint64(size)) // the segment of the largest LSN
			for _, seg := range []SegNo{0, 1, 2, SegNo(perID) - 1, SegNo(perID), SegNo(perID) + 1,
				SegNo(3*perID) + 7, SegNo(0xFFFF * perID), last - 1, last} {
				start := seg.Start(size)
				end := start + LSN(size) - 1
				for _, lsn := range []LSN{start, start + 1, start + LSN(size)/2, end} {
					if got := SegmentOf(lsn, size); got != seg {
						t.Errorf("SegmentOf(%s): got %d, want %d", lsn, got, seg)
					}
				}
				if got := SegmentOffset(start, size); got != 0 {
					t.Errorf("SegmentOffset(%s): got %d, want 0", start, got)
				}
				if got := SegmentOffset(end, size); got != size-1 {
					t.Errorf("SegmentOffset(%s): got %d, want %d", end, got, size-1)
				}
				if seg != last {
					if got := SegmentOf(end+1, size); got != seg+1 {
						t.Errorf("SegmentOf(%s): got %d, want the next segment %d", end+1, got, seg+1)
					}
				}

				name := SegmentName(7, seg, size)
				want := fmt.Sprintf("%08X%08X%08X", 7, uint64(seg)/perID, uint64(seg)%perID)
				if name != want {
					t.Errorf("SegmentName(7, %d): got %q, want %q", seg, name, want)
				}
				n, err := ParseName(name)
				if err != nil {
					t.Errorf("ParseName(%q): %v", name, err)
					continue
				}
				if got, err := n.SegNo(size); err != nil || got != seg {
					t.Errorf("ParseName(%q).SegNo: got %d, %v, want %d", name, got, err, seg)
				}
				if n.String() != name {
					t.Errorf("ParseName(%q).String(): got %q", name, n.String())
				}
			}
		})
	}
}

// TestSegmentNameRollover pins the names around the point where the low part
// wraps and the middle part increments, for every segment size.
func TestSegmentNameRollover(t *testing.T) {
	tests := []struct {
		size       int64
		lastLow    string
		firstOfLog string
	}{
		{1 << 20, "000000010000000000000FFF", "000000010000000100000000"},
		{2 << 20, "0000000100000000000007FF", "000000010000000100000000"},
		{4 << 20, "0000000100000000000003FF", "000000010000000100000000"},
		{8 << 20, "0000000100000000000001FF", "000000010000000100000000"},
		{16 << 20, "0000000100000000000000FF", "000000010000000100000000"},
		{32 << 20, "00000001000000000000007F", "000000010000000100000000"},
		{64 << 20, "00000001000000000000003F", "000000010000000100000000"},
		{128 << 20, "00000001000000000000001F", "000000010000000100000000"},
		{256 << 20, "00000001000000000000000F", "000000010000000100000000"},
		{512 << 20, "000000010000000000000007", "000000010000000100000000"},
		{1 << 30, "000000010000000000000003", "000000010000000100000000"},
	}
	for _, tt := range tests {
		seg := SegmentOf(0xFFFFFFFF, tt.size) // the last byte below 1/0
		if got := SegmentName(1, seg, tt.size); got != tt.lastLow {
			t.Errorf("%s: SegmentName(1, SegmentOf(0/FFFFFFFF)): got %q, want %q", formatSize(tt.size), got, tt.lastLow)
		}
		if got := SegmentName(1, seg+1, tt.size); got != tt.firstOfLog {
			t.Errorf("%s: SegmentName(1, next): got %q, want %q", formatSize(tt.size), got, tt.firstOfLog)
		}
		if got := (seg + 1).Start(tt.size); got != 1<<32 {
			t.Errorf("%s: start of %s: got %s, want 1/00000000", formatSize(tt.size), tt.firstOfLog, got)
		}
	}
}

func TestSegmentMathKnownValues(t *testing.T) {
	// Values pg_walfile_name_offset returns on a 16 MiB cluster.
	lsn, _ := ParseLSN("16/B374D848")
	if got, want := SegmentName(1, SegmentOf(lsn, DefaultSegmentSize), DefaultSegmentSize), "0000000100000016000000B3"; got != want {
		t.Errorf("segment of 16/B374D848: got %q, want %q", got, want)
	}
	if got, want := SegmentOffset(lsn, DefaultSegmentSize), int64(0x74D848); got != want {
		t.Errorf("offset of 16/B374D848: got %#x, want %#x", got, want)
	}
	// The same LSN on a 1 MiB cluster.
	if got, want := SegmentName(1, SegmentOf(lsn, 1<<20), 1<<20), "000000010000001600000B37"; got != want {
		t.Errorf("segment of 16/B374D848 (1 MiB): got %q, want %q", got, want)
	}
	if got, want := HistoryName(2), "00000002.history"; got != want {
		t.Errorf("HistoryName(2): got %q, want %q", got, want)
	}
	if got, want := HistoryName(0x1A), "0000001A.history"; got != want {
		t.Errorf("HistoryName(0x1A): got %q, want %q", got, want)
	}
}

func TestInvalidSegmentSizePanics(t *testing.T) {
	for _, size := range []int64{0, 1000, 3 << 20, 2 << 30} {
		for name, f := range map[string]func(){
			"SegmentOf":        func() { SegmentOf(1, size) },
			"Start":            func() { SegNo(1).Start(size) },
			"SegmentOffset":    func() { SegmentOffset(1, size) },
			"SegmentsPerLogID": func() { SegmentsPerLogID(size) },
			"SegmentName":      func() { SegmentName(1, 1, size) },
		} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s with segment size %d: got no panic, want one", name, size)
					}
				}()
				f()
			}()
		}
	}
}
