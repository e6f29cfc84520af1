package wal

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Facts about the files in testdata, recorded by testdata/README.md from
// pg_controldata and pg_waldump when the files were made.
const (
	sysidA = 7710793034807477968 // 1 MiB segments, timelines 1 to 3
	sysidB = 7710793051746588501 // 16 MiB segments
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pageHeader is the short header every WAL page starts with.
type pageHeader struct {
	magic, info uint16
	tli         TimeLine
	pageAddr    LSN
}

func pageHeaders(b []byte, blockSize int) []pageHeader {
	var hs []pageHeader
	for off := 0; off+blockSize <= len(b); off += blockSize {
		page := b[off : off+blockSize]
		if allZero(page) {
			break
		}
		hs = append(hs, pageHeader{
			magic:    binary.LittleEndian.Uint16(page[0:]),
			info:     binary.LittleEndian.Uint16(page[2:]),
			tli:      TimeLine(binary.LittleEndian.Uint32(page[4:])),
			pageAddr: LSN(binary.LittleEndian.Uint64(page[8:])),
		})
	}
	return hs
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestRealSegments(t *testing.T) {
	tests := []struct {
		file     string
		size     int // file size
		sysid    uint64
		segSize  int64
		tli      TimeLine // in the first page header
		pageAddr LSN
		info     uint16
		pages    int // pages written to this segment before the rest is zeros (or stale)
	}{
		{"000000010000000000000007", 1 << 20, sysidA, 1 << 20, 1, 0x700000, 0x0006, 123},
		{"000000010000000000000008", 1 << 20, sysidA, 1 << 20, 1, 0x800000, 0x0006, 128},
		{"00000001000000000000000B.partial", 1 << 20, sysidA, 1 << 20, 1, 0xB00000, 0x0006, 1},
		{"00000002000000000000000B", 1 << 20, sysidA, 1 << 20, 1, 0xB00000, 0x0006, 36},
		{"000000010000000000000001.head16", 8192, sysidB, 16 << 20, 1, 0x1000000, 0x0002, 1},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b := readTestdata(t, tt.file)
			if len(b) != tt.size {
				t.Fatalf("got %d bytes, want %d", len(b), tt.size)
			}
			h, err := ParseLongHeader(b)
			if err != nil {
				t.Fatalf("ParseLongHeader: %v", err)
			}
			want := LongHeader{Magic: 0xD110, Info: tt.info, TLI: tt.tli, PageAddr: tt.pageAddr,
				SystemID: tt.sysid, SegmentSize: uint32(tt.segSize), BlockSize: 8192}
			if h != want {
				t.Errorf("ParseLongHeader: got %+v, want %+v", h, want)
			}
			if v := h.PGVersion(); v != 15 {
				t.Errorf("PGVersion: got %d, want 15", v)
			}

			n, err := ParseName(strings.TrimSuffix(tt.file, ".head16"))
			if err != nil {
				t.Fatalf("ParseName: %v", err)
			}
			if err := h.Check(n, tt.sysid, tt.segSize); err != nil {
				t.Errorf("Check(%s, %d, %d): %v", n, tt.sysid, tt.segSize, err)
			}
			if err := h.Check(n, 0, 0); err != nil {
				t.Errorf("Check(%s, 0, 0): %v", n, err)
			}

			// Every page the server wrote has its address; pages of the new
			// timeline's first segment after the copied one carry timeline 2.
			pages := pageHeaders(b, 8192)
			if tt.pages > 1 && len(pages) != tt.pages {
				t.Errorf("got %d written pages, want %d", len(pages), tt.pages)
			}
			for i, p := range pages[:min(tt.pages, len(pages))] {
				if p.magic != 0xD110 || p.pageAddr != tt.pageAddr+LSN(i*8192) {
					t.Errorf("page %d: got magic %04X at %s, want D110 at %s", i, p.magic, p.pageAddr, tt.pageAddr+LSN(i*8192))
				}
				if wantLong := i == 0; (p.info&InfoLongHeader != 0) != wantLong {
					t.Errorf("page %d: got info %04X, want the long header flag only on page 0", i, p.info)
				}
				if i > 0 && p.tli != n.TLI {
					t.Errorf("page %d: got timeline %d, want %d", i, p.tli, n.TLI)
				}
			}
		})
	}
}

// TestRealSegmentDetails pins what makes each file worth keeping.
func TestRealSegmentDetails(t *testing.T) {
	// Segment 7 ends with pg_switch_wal(): an XLOG_SWITCH record at 0/7F4F40
	// (xl_tot_len 24, xl_info 0x40, xl_rmid 0), then zeros to the end.
	b := readTestdata(t, "000000010000000000000007")
	rec := b[0xF4F40:]
	if got := binary.LittleEndian.Uint32(rec); got != 24 {
		t.Errorf("record at 0/7F4F40: got xl_tot_len %d, want 24", got)
	}
	if rec[16] != 0x40 || rec[17] != 0 {
		t.Errorf("record at 0/7F4F40: got xl_info %#x, xl_rmid %d, want XLOG_SWITCH (0x40, 0)", rec[16], rec[17])
	}
	if !allZero(b[0xF4F58:]) {
		t.Errorf("segment 7 after the switch record: got non-zero bytes, want zeros")
	}

	// The .partial was a recycled file: past the switch point its pages are
	// stale WAL of segment 7. This is why a tail must stop at the flush LSN.
	p := pageHeaders(readTestdata(t, "00000001000000000000000B.partial"), 8192)
	if len(p) < 2 || p[1].pageAddr != 0x702000 {
		t.Errorf(".partial page 1: got %+v, want a stale page of 0/00702000", p[1:min(2, len(p))])
	}
}

func TestRealSegmentsRefused(t *testing.T) {
	h, err := ParseLongHeader(readTestdata(t, "00000002000000000000000B"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		systemID uint64
		segSize  int64
		wantErr  error
		wantMsg  string
	}{
		{"00000002000000000000000B", sysidB, 1 << 20, ErrForeignSystem,
			"has database system identifier 7710793034807477968, want 7710793051746588501"},
		{"00000002000000000000000B", sysidA, 16 << 20, ErrSegmentSize, "has 1 MiB segments, want 16 MiB"},
		{"00000002000000000000000C", sysidA, 1 << 20, ErrWrongSegment, "starts at 0/00C00000"},
		{"00000002000000010000000B", sysidA, 1 << 20, ErrWrongSegment, "starts at 1/00B00000"},
		{"00000003000000000000000B", sysidA, 1 << 20, nil, ""}, // a later timeline may start with this page
		{"00000001000000000000000B", sysidA, 1 << 20, nil, ""},
	}
	for _, tt := range tests {
		n, err := ParseName(tt.name)
		if err != nil {
			t.Fatal(err)
		}
		err = h.Check(n, tt.systemID, tt.segSize)
		if tt.wantErr == nil {
			if err != nil {
				t.Errorf("Check(%s): got %v, want nil", tt.name, err)
			}
			continue
		}
		if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("Check(%s): got %v, want an error wrapping %q containing %q", tt.name, err, tt.wantErr, tt.wantMsg)
		}
	}

	// A page of timeline 2 is not the start of a timeline 1 segment.
	h.TLI = 2
	n, _ := ParseName("00000001000000000000000B")
	if err := h.Check(n, sysidA, 1<<20); !errors.Is(err, ErrWrongSegment) {
		t.Errorf("Check with a later timeline: got %v, want ErrWrongSegment", err)
	}
}

func TestRealHistory(t *testing.T) {
	const reason = "no recovery target specified"
	tests := []struct {
		file string
		want []HistoryEntry
	}{
		{"00000002.history", []HistoryEntry{{1, 0xB000A0, reason}}},
		{"00000003.history", []HistoryEntry{{1, 0xB000A0, reason}, {2, 0xC000A0, reason}}},
	}
	for _, tt := range tests {
		got, err := ParseHistory(readTestdata(t, tt.file))
		if err != nil {
			t.Errorf("ParseHistory(%s): %v", tt.file, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseHistory(%s): got %+v, want %+v", tt.file, got, tt.want)
		}
		n, err := ParseName(tt.file)
		if err != nil || n.Kind != History {
			t.Errorf("ParseName(%s): got %+v, %v, want a history name", tt.file, n, err)
			continue
		}
		for _, e := range got {
			if e.TLI >= n.TLI {
				t.Errorf("%s: entry for timeline %d, want parents below %d", tt.file, e.TLI, n.TLI)
			}
		}
	}
	// The switch point of timeline 2 is where its first segment stops being a
	// copy of timeline 1.
	if got := SegmentName(2, SegmentOf(0xB000A0, 1<<20), 1<<20); got != "00000002000000000000000B" {
		t.Errorf("first segment of timeline 2: got %s, want 00000002000000000000000B", got)
	}
}

func TestTestdataNames(t *testing.T) {
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || name == "README.md" {
			continue
		}
		name = strings.TrimSuffix(name, ".head16")
		if major, rest, ok := strings.Cut(strings.TrimSuffix(name, ".zst"), "-"); ok && strings.HasPrefix(major, "pg") {
			name = rest // pgN-<segment>.zst: another major's segment
		}
		n, err := ParseName(name)
		if err != nil {
			t.Errorf("ParseName(%q): %v", name, err)
			continue
		}
		if n.String() != name {
			t.Errorf("ParseName(%q).String(): got %q", name, n.String())
		}
	}
}
