package wal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func FuzzParseName(f *testing.F) {
	for _, s := range []string{
		"000000010000000000000001", "0000000100000000000000FF", "000000010000000100000000",
		"00000001000000000000000B.partial", "00000002.history",
		"000000010000000000000002.00000028.backup", "FFFFFFFFFFFFFFFFFFFFFFFF",
		"000000000000000000000001", "00000001000000000000000b", "../000000010000000000000001",
		"000000010000000000000001.zst", "00000002.history.zst", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseName(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("ParseName(%q): got error %v, want it to wrap ErrInvalidName", s, err)
			}
			if n != (Name{}) {
				t.Fatalf("ParseName(%q): got %+v with an error, want the zero Name", s, n)
			}
			return
		}
		// The parser takes canonical names only, so formatting gives the input back.
		if got := n.String(); got != s {
			t.Fatalf("ParseName(%q).String(): got %q", s, got)
		}
		if n.TLI == 0 {
			t.Fatalf("ParseName(%q): got timeline 0", s)
		}
		// Names never leave their directory.
		if strings.ContainsAny(s, `/\`) || strings.Contains(s, "..") {
			t.Fatalf("ParseName(%q): accepted a path", s)
		}
		switch n.Kind {
		case History:
			if n.Log != 0 || n.Seg != 0 || n.Offset != 0 || n.SegmentName() != "" {
				t.Fatalf("ParseName(%q): got %+v, want only a timeline", s, n)
			}
			if _, err := n.SegNo(DefaultSegmentSize); !errors.Is(err, ErrInvalidName) {
				t.Fatalf("ParseName(%q).SegNo: got %v, want ErrInvalidName", s, err)
			}
			return
		case Segment, Partial:
			if n.Offset != 0 {
				t.Fatalf("ParseName(%q): got offset %d, want 0", s, n.Offset)
			}
		case Backup:
		default:
			t.Fatalf("ParseName(%q): got kind %v", s, n.Kind)
		}
		plain, err := ParseName(n.SegmentName())
		if err != nil || plain != (Name{Kind: Segment, TLI: n.TLI, Log: n.Log, Seg: n.Seg}) {
			t.Fatalf("ParseName(%q).SegmentName(): got %+v, %v", s, plain, err)
		}
		for size := int64(MinSegmentSize); size <= MaxSegmentSize; size *= 2 {
			seg, err := n.SegNo(size)
			if err != nil {
				if !errors.Is(err, ErrInvalidName) {
					t.Fatalf("ParseName(%q).SegNo(%d): got %v, want ErrInvalidName", s, size, err)
				}
				continue
			}
			if got := SegmentName(n.TLI, seg, size); got != n.SegmentName() {
				t.Fatalf("ParseName(%q).SegNo(%d) = %d, whose name is %q", s, size, seg, got)
			}
		}
	})
}

func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/0", "16/B374D848", "16/b374d848", "FFFFFFFF/FFFFFFFF",
		"0/01000000", "100000000/0", "0x1/0", "-1/0", "1/", "/1", "1//1", " 1/1"} {
		f.Add(s, uint64(0x16_B374D848))
	}
	f.Fuzz(func(t *testing.T, s string, v uint64) {
		// Any LSN formats to a string that parses back.
		if got, err := ParseLSN(LSN(v).String()); err != nil || got != LSN(v) {
			t.Fatalf("ParseLSN(%q): got %s, %v, want %#x", LSN(v).String(), got, err, v)
		}

		// Differential check against strconv, which knows hex.
		want, wantOK := referenceLSN(s)
		got, err := ParseLSN(s)
		if (err == nil) != wantOK {
			t.Fatalf("ParseLSN(%q): got %s, %v, want ok = %v", s, got, err, wantOK)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidLSN) {
				t.Fatalf("ParseLSN(%q): got error %v, want it to wrap ErrInvalidLSN", s, err)
			}
			return
		}
		if got != want {
			t.Fatalf("ParseLSN(%q): got %#x, want %#x", s, uint64(got), uint64(want))
		}
		if back, err := ParseLSN(got.String()); err != nil || back != got {
			t.Fatalf("ParseLSN(%q) round trip through %q: got %s, %v", s, got.String(), back, err)
		}
	})
}

// referenceLSN is ParseLSN written the obvious way.
func referenceLSN(s string) (LSN, bool) {
	parts := strings.Split(s, "/")
	if len(parts) != 2 {
		return 0, false
	}
	var v [2]uint64
	for i, p := range parts {
		if len(p) < 1 || len(p) > 8 || strings.ContainsAny(p, "_+-xX") {
			return 0, false
		}
		n, err := strconv.ParseUint(p, 16, 32)
		if err != nil {
			return 0, false
		}
		v[i] = n
	}
	return LSN(v[0]<<32 | v[1]), true
}

func FuzzParseLongHeader(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "0*"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil && len(b) >= 64 && !strings.HasSuffix(file, ".history") {
			f.Add(b[:64])
		}
	}
	h := testHeader()
	for _, m := range []func(*LongHeader){
		func(*LongHeader) {},
		func(h *LongHeader) { h.Magic = 0x10D1 },
		func(h *LongHeader) { h.Info = 0 },
		func(h *LongHeader) { h.SegmentSize = 3 << 20 },
		func(h *LongHeader) { h.PageAddr = 0xFFFFFFFF_FF000000 },
		func(h *LongHeader) { h.SegmentSize = 1 << 30; h.PageAddr = 0xFFFFFFFF_C0000000 },
	} {
		c := h
		m(&c)
		b, _ := c.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add(make([]byte, LongHeaderSize))

	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseLongHeader(b)
		if err != nil {
			if !errors.Is(err, ErrNotWAL) {
				t.Fatalf("ParseLongHeader: got error %v, want it to wrap ErrNotWAL", err)
			}
			return
		}
		enc, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		// The encoding matches the input but for the padding.
		if !bytes.Equal(enc[:20], b[:20]) || !bytes.Equal(enc[24:], b[24:LongHeaderSize]) {
			t.Fatalf("MarshalBinary: got %x, want %x", enc, b[:LongHeaderSize])
		}
		if back, err := ParseLongHeader(enc); err != nil || back != h {
			t.Fatalf("ParseLongHeader(MarshalBinary(h)): got %+v, %v, want %+v", back, err, h)
		}
		if h.PGVersion() == 0 || h.TLI == 0 || !ValidSegmentSize(int64(h.SegmentSize)) {
			t.Fatalf("ParseLongHeader accepted %+v", h)
		}
		// A valid header is the start of the segment it names.
		size := int64(h.SegmentSize)
		name := SegmentName(h.TLI, SegmentOf(h.PageAddr, size), size)
		n, err := ParseName(name)
		if err != nil {
			t.Fatalf("ParseName(%q) for %+v: %v", name, h, err)
		}
		if err := h.Check(n, h.SystemID, size); err != nil {
			t.Fatalf("Check(%s) for %+v: %v", name, h, err)
		}
		if h.SystemID != 0 {
			if err := h.Check(n, h.SystemID+1, size); !errors.Is(err, ErrForeignSystem) {
				t.Fatalf("Check with another system: got %v, want ErrForeignSystem", err)
			}
		}
	})
}

func FuzzParseHistory(f *testing.F) {
	for _, file := range []string{"00000002.history", "00000003.history"} {
		if b, err := os.ReadFile(filepath.Join("testdata", file)); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{"", "# c\n", "1\t0/1\n", "1\t0/1\ta\n\n2\t0/2\tb\r\n", "2\t0/1\n1\t0/2\n",
		"  1  0/10 \t x\ty  \n", "1\t0/1reason", "4294967296\t0/1\n", "1\t0/1\ta\r2\t0/2\tb"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseHistory(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidHistory) || entries != nil {
				t.Fatalf("ParseHistory: got %+v, %v, want no entries and an ErrInvalidHistory error", entries, err)
			}
			return
		}
		for i, e := range entries {
			if e.TLI == 0 || (i > 0 && e.TLI <= entries[i-1].TLI) {
				t.Fatalf("ParseHistory: entry %d has timeline %d after %+v", i, e.TLI, entries[:i])
			}
			if strings.ContainsRune(e.Reason, '\n') || strings.Trim(e.Reason, blanks) != e.Reason {
				t.Fatalf("ParseHistory: entry %d has reason %q", i, e.Reason)
			}
		}
		again, err := ParseHistory(FormatHistory(entries))
		if err != nil || !reflect.DeepEqual(again, entries) {
			t.Fatalf("ParseHistory(FormatHistory(%+v)): got %+v, %v", entries, again, err)
		}
	})
}
