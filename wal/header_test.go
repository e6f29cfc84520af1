package wal

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// The header encoding is what tests in other packages build segments with.
var (
	_ encoding.BinaryAppender  = LongHeader{}
	_ encoding.BinaryMarshaler = LongHeader{}
)

func testHeader() LongHeader {
	return LongHeader{
		Magic:       0xD110,
		Info:        InfoLongHeader | InfoBkpRemovable,
		TLI:         1,
		PageAddr:    0x1000000,
		SystemID:    7710793051746588501,
		SegmentSize: 16 << 20,
		BlockSize:   8192,
	}
}

func mustMarshal(t *testing.T, h LongHeader) []byte {
	t.Helper()
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	return b
}

func TestLongHeaderLayout(t *testing.T) {
	h := testHeader()
	h.RemLen = 0x11223344
	b := mustMarshal(t, h)
	if len(b) != LongHeaderSize {
		t.Fatalf("MarshalBinary: got %d bytes, want %d", len(b), LongHeaderSize)
	}
	// Offsets from XLogLongPageHeaderData on a 64-bit little-endian machine.
	le := binary.LittleEndian
	for _, f := range []struct {
		name      string
		got, want uint64
	}{
		{"xlp_magic at 0", uint64(le.Uint16(b[0:])), 0xD110},
		{"xlp_info at 2", uint64(le.Uint16(b[2:])), 0x0006},
		{"xlp_tli at 4", uint64(le.Uint32(b[4:])), 1},
		{"xlp_pageaddr at 8", le.Uint64(b[8:]), 0x1000000},
		{"xlp_rem_len at 16", uint64(le.Uint32(b[16:])), 0x11223344},
		{"padding at 20", uint64(le.Uint32(b[20:])), 0},
		{"xlp_sysid at 24", le.Uint64(b[24:]), 7710793051746588501},
		{"xlp_seg_size at 32", uint64(le.Uint32(b[32:])), 16 << 20},
		{"xlp_xlog_blcksz at 36", uint64(le.Uint32(b[36:])), 8192},
	} {
		if f.got != f.want {
			t.Errorf("%s: got %#x, want %#x", f.name, f.got, f.want)
		}
	}
	got, err := ParseLongHeader(append(b, make([]byte, 8152)...))
	if err != nil || got != h {
		t.Errorf("ParseLongHeader(MarshalBinary(h)): got %+v, %v, want %+v", got, err, h)
	}
	prefix := []byte("prefix")
	app, _ := h.AppendBinary(prefix)
	if !bytes.Equal(app[:len(prefix)], prefix) || !bytes.Equal(app[len(prefix):], b) {
		t.Errorf("AppendBinary: got %x, want %x after the prefix", app, b)
	}
}

func TestParseLongHeaderAccepts(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*LongHeader)
	}{
		{"default", func(*LongHeader) {}},
		{"continuation record", func(h *LongHeader) { h.Info |= InfoFirstIsContRecord; h.RemLen = 100 }},
		{"overwrite contrecord (PostgreSQL 15)", func(h *LongHeader) { h.Info = InfoLongHeader | InfoFirstIsOverwriteContRecord }},
		{"all flags", func(h *LongHeader) { h.Info = InfoAllFlags }},
		{"1 MiB segments", func(h *LongHeader) { h.SegmentSize = 1 << 20; h.PageAddr = 0x700000 }},
		{"1 GiB segments", func(h *LongHeader) { h.SegmentSize = 1 << 30; h.PageAddr = 3 << 30 }},
		{"segment 0", func(h *LongHeader) { h.PageAddr = 0 }},
		{"1 kB WAL blocks", func(h *LongHeader) { h.BlockSize = 1024 }},
		{"64 kB WAL blocks", func(h *LongHeader) { h.BlockSize = 65536 }},
		{"PostgreSQL 12", func(h *LongHeader) { h.Magic = 0xD101 }},
		{"PostgreSQL 18", func(h *LongHeader) { h.Magic = 0xD118 }},
		{"timeline 0xFFFFFFFF", func(h *LongHeader) { h.TLI = 0xFFFFFFFF }},
		{"system identifier 0", func(h *LongHeader) { h.SystemID = 0 }},
	}
	for _, tt := range tests {
		h := testHeader()
		tt.modify(&h)
		got, err := ParseLongHeader(mustMarshal(t, h))
		if err != nil || got != h {
			t.Errorf("%s: ParseLongHeader: got %+v, %v, want %+v", tt.name, got, err, h)
		}
	}
}

func TestParseLongHeaderRejects(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*LongHeader)
		want   string
	}{
		{"unknown magic", func(h *LongHeader) { h.Magic = 0xD097 }, "unknown page magic D097"},
		// A major newer than walship knows (19's magic, say) is refused
		// with advice, not misparsed.
		{"newer major", func(h *LongHeader) { h.Magic = 0xD11C }, "newer than PostgreSQL 18's, the newest this walship knows: upgrade walship"},
		{"big-endian PostgreSQL 15", func(h *LongHeader) { h.Magic = 0x10D1 }, "big-endian WAL of PostgreSQL 15"},
		{"big-endian PostgreSQL 17", func(h *LongHeader) { h.Magic = 0x16D1 }, "big-endian WAL of PostgreSQL 17"},
		{"all zeros", func(h *LongHeader) { *h = LongHeader{} }, "all zeros"},
		{"short header", func(h *LongHeader) { h.Info = InfoBkpRemovable }, "no long header flag"},
		{"no flags", func(h *LongHeader) { h.Info = 0 }, "no long header flag"},
		{"undefined flag", func(h *LongHeader) { h.Info |= 0x0010 }, "undefined flag bits"},
		{"high flag", func(h *LongHeader) { h.Info |= 0x8000 }, "undefined flag bits"},
		{"timeline 0", func(h *LongHeader) { h.TLI = 0 }, "timeline 0"},
		{"segment size 0", func(h *LongHeader) { h.SegmentSize = 0 }, "segment size 0"},
		{"segment size 512 KiB", func(h *LongHeader) { h.SegmentSize = 512 << 10 }, "segment size 524288"},
		{"segment size 2 GiB", func(h *LongHeader) { h.SegmentSize = 2 << 30 }, "segment size 2147483648"},
		{"segment size 3 MiB", func(h *LongHeader) { h.SegmentSize = 3 << 20 }, "segment size 3145728"},
		{"block size 0", func(h *LongHeader) { h.BlockSize = 0 }, "block size 0"},
		{"block size 512", func(h *LongHeader) { h.BlockSize = 512 }, "block size 512"},
		{"block size 128 kB", func(h *LongHeader) { h.BlockSize = 128 << 10 }, "block size 131072"},
		{"block size 3 kB", func(h *LongHeader) { h.BlockSize = 3 << 10 }, "block size 3072"},
		{"page address inside a segment", func(h *LongHeader) { h.PageAddr = 0x1002000 }, "page address 0/01002000 is not the start of a 16 MiB segment"},
		{"page address of a 1 MiB segment", func(h *LongHeader) { h.PageAddr = 0x700000 }, "not the start"},
	}
	for _, tt := range tests {
		h := testHeader()
		tt.modify(&h)
		got, err := ParseLongHeader(mustMarshal(t, h))
		if !errors.Is(err, ErrNotWAL) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ParseLongHeader: got %+v, %v, want an ErrNotWAL error containing %q", tt.name, got, err, tt.want)
		}
	}
}

func TestParseLongHeaderShort(t *testing.T) {
	b := mustMarshal(t, testHeader())
	for _, n := range []int{0, 1, 24, LongHeaderSize - 1} {
		_, err := ParseLongHeader(b[:n])
		if !errors.Is(err, ErrNotWAL) {
			t.Errorf("ParseLongHeader(%d bytes): got %v, want ErrNotWAL", n, err)
		}
	}
	if _, err := ParseLongHeader(nil); err == nil || !strings.Contains(err.Error(), "0 bytes") {
		t.Errorf("ParseLongHeader(nil): got %v, want an error saying 0 bytes", err)
	}
	// The padding is not checked: PostgreSQL does not promise to zero it.
	b[20], b[23] = 0xFF, 0xFF
	if _, err := ParseLongHeader(b); err != nil {
		t.Errorf("ParseLongHeader with non-zero padding: %v", err)
	}
}

func TestMagicVersion(t *testing.T) {
	tests := []struct {
		magic uint16
		major int
		ok    bool
	}{
		{0xD101, 12, true},
		{0xD106, 13, true},
		{0xD10D, 14, true},
		{0xD110, 15, true},
		{0xD113, 16, true},
		{0xD116, 17, true},
		{0xD118, 18, true},
		{0xD098, 0, false}, // PostgreSQL 11
		{0xD114, 0, false}, // a 17 development snapshot
		{0x10D1, 0, false},
		{0, 0, false},
	}
	for _, tt := range tests {
		major, ok := MagicVersion(tt.magic)
		if major != tt.major || ok != tt.ok {
			t.Errorf("MagicVersion(%#04x): got %d, %v, want %d, %v", tt.magic, major, ok, tt.major, tt.ok)
		}
		if got := (LongHeader{Magic: tt.magic}).PGVersion(); got != tt.major {
			t.Errorf("PGVersion with magic %#04x: got %d, want %d", tt.magic, got, tt.major)
		}
		if tt.ok {
			if magic, ok := VersionMagic(tt.major); !ok || magic != tt.magic {
				t.Errorf("VersionMagic(%d): got %#04x, %v, want %#04x", tt.major, magic, ok, tt.magic)
			}
		}
	}
	for _, major := range []int{0, 11, 19} {
		if magic, ok := VersionMagic(major); ok {
			t.Errorf("VersionMagic(%d): got %#04x, true, want false", major, magic)
		}
	}
}

func TestCheck(t *testing.T) {
	const sysid = 7710793051746588501
	name := func(s string) Name {
		n, err := ParseName(s)
		if err != nil {
			t.Fatalf("ParseName(%q): %v", s, err)
		}
		return n
	}
	seg := name("000000010000000000000001")
	tests := []struct {
		desc     string
		modify   func(*LongHeader)
		n        Name
		systemID uint64
		segSize  int64
		wantErr  error  // nil for success
		wantMsg  string // part of the message
	}{
		{"matching segment", nil, seg, sysid, 16 << 20, nil, ""},
		{"no expectations", nil, seg, 0, 0, nil, ""},
		{"partial", nil, name("000000010000000000000001.partial"), sysid, 16 << 20, nil, ""},
		{"new timeline starts with the old one's page", nil, name("000000020000000000000001"), sysid, 16 << 20, nil, ""},
		{"rollover", func(h *LongHeader) { h.PageAddr = 1 << 32 }, name("000000010000000100000000"), sysid, 16 << 20, nil, ""},
		{"1 MiB", func(h *LongHeader) { h.SegmentSize = 1 << 20; h.PageAddr = 0xB00000 }, name("00000002000000000000000B"), sysid, 1 << 20, nil, ""},

		{"segment size", nil, seg, sysid, 1 << 20, ErrSegmentSize, "has 16 MiB segments, want 1 MiB"},
		{"foreign system", nil, seg, 7710793034807477968, 16 << 20, ErrForeignSystem,
			"000000010000000000000001 has database system identifier 7710793051746588501, want 7710793034807477968"},
		{"previous segment", nil, name("000000010000000000000002"), sysid, 16 << 20, ErrWrongSegment,
			"000000010000000000000002 starts at 0/02000000, the page header says 0/01000000 (segment 000000010000000000000001)"},
		{"next segment", nil, name("000000010000000000000000"), sysid, 0, ErrWrongSegment, "starts at 0/00000000"},
		{"other log", nil, name("000000010000000100000001"), sysid, 0, ErrWrongSegment, "starts at 1/01000000"},
		{"later timeline in header", func(h *LongHeader) { h.TLI = 3 }, name("000000020000000000000001"), sysid, 0, ErrWrongSegment,
			"on timeline 2, the page header says timeline 3"},
		{"low part too large for the size", nil, name("000000010000000000000100"), sysid, 0, ErrWrongSegment, "too large"},
		{"history name", nil, name("00000002.history"), sysid, 0, ErrInvalidName, "no page header"},
		{"backup name", nil, name("000000010000000000000001.00000028.backup"), sysid, 0, ErrInvalidName, "no page header"},
		{"zero name", nil, Name{}, sysid, 0, ErrInvalidName, "no page header"},
		{"invalid header", func(h *LongHeader) { h.SegmentSize = 0 }, seg, sysid, 0, ErrNotWAL, "000000010000000000000001: not a WAL segment"},
	}
	for _, tt := range tests {
		h := testHeader()
		if tt.modify != nil {
			tt.modify(&h)
		}
		err := h.Check(tt.n, tt.systemID, tt.segSize)
		if tt.wantErr == nil {
			if err != nil {
				t.Errorf("%s: Check: got %v, want nil", tt.desc, err)
			}
			continue
		}
		if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("%s: Check: got %v, want an error wrapping %q containing %q", tt.desc, err, tt.wantErr, tt.wantMsg)
		}
	}
}
