package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// realSegments are the complete segments in testdata, all with 1 MiB
// segments, which must verify.
var realSegments = []string{
	"000000010000000000000007",         // ends with a switch record
	"000000010000000000000008",         // its last record runs into segment 9
	"00000002000000000000000B",         // first segment of timeline 2, page 0 of timeline 1
	"00000001000000000000000B.partial", // WAL up to 0/B000A0, then a recycled file's stale pages
}

// verifyChunks verifies b as a SegmentVerifier fed chunk bytes at a time.
func verifyChunks(n Name, segSize int64, b []byte, chunk int) (*SegmentVerifier, error) {
	v := NewSegmentVerifier(n, segSize)
	for len(b) > 0 {
		k := min(chunk, len(b))
		if _, err := v.Write(b[:k]); err != nil {
			break
		}
		b = b[k:]
	}
	return v, v.Close()
}

func mustName(t testing.TB, s string) Name {
	t.Helper()
	n, err := ParseName(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestVerifyRealSegments(t *testing.T) {
	for _, file := range realSegments {
		t.Run(file, func(t *testing.T) {
			b := readTestdata(t, file)
			n := mustName(t, file)
			if err := VerifySegment(n, b); err != nil {
				t.Errorf("VerifySegment: got %v, want nil", err)
			}
			for _, chunk := range []int{1, 7, 8192, 8191, len(b)} {
				if _, err := verifyChunks(n, 1<<20, b, chunk); err != nil {
					t.Errorf("%d-byte writes: got %v, want nil", chunk, err)
				}
			}
		})
	}
}

// TestVerifyRealSegmentDetails pins what the verifier makes of each file, so
// that a check that silently stops looking is noticed.
func TestVerifyRealSegmentDetails(t *testing.T) {
	tests := []struct {
		file    string
		records int
		state   verifyState
		endOff  int64 // end of the switch record, or of the .partial's WAL
		open    LSN   // the record that runs into the next segment
	}{
		{"000000010000000000000007", 10411, afterSwitch, 0xF4F58, 0},
		{"000000010000000000000008", 10890, inRecord, -1, 0x8FFFD0},
		{"00000002000000000000000B", 3004, afterSwitch, 0x47478, 0},
		{"00000001000000000000000B.partial", 1, afterEnd, 0xA0, 0},
	}
	for _, tt := range tests {
		v, err := verifyChunks(mustName(t, tt.file), 1<<20, readTestdata(t, tt.file), 1<<20)
		if err != nil {
			t.Errorf("%s: %v", tt.file, err)
			continue
		}
		if v.records != tt.records || v.state != tt.state || v.endOff != tt.endOff {
			t.Errorf("%s: got %d records, state %d, end at %#x, want %d, %d, %#x",
				tt.file, v.records, v.state, v.endOff, tt.records, tt.state, tt.endOff)
		}
		if tt.state == inRecord && v.rec.lsn != tt.open {
			t.Errorf("%s: got the record at %s open at the end, want %s", tt.file, v.rec.lsn, tt.open)
		}
	}
}

// TestVerifyRealSegmentFlips damages one byte at a time: every byte of every
// page header, every byte of a sample of records, and random bytes. Each
// must be found, but for the bytes no check can see: the system identifier,
// the rest of a record that runs past the end of the segment (which the
// next segment completes), and a .partial file past the end of its WAL.
func TestVerifyRealSegmentFlips(t *testing.T) {
	for _, file := range realSegments {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			orig := readTestdata(t, file)
			n := mustName(t, file)
			intact, err := verifyChunks(n, 1<<20, orig, len(orig))
			if err != nil {
				t.Fatal(err)
			}
			pageStep, samples := 8192, 1500
			if testing.Short() {
				pageStep, samples = 4*8192, 300
			}
			var offs []int
			for p := 0; p < len(orig); p += pageStep {
				for i := range shortHeaderSize {
					offs = append(offs, p+i)
				}
			}
			offs = append(offs, 24, 32, 33, 36, 37) // long header: sysid, segment size, block size
			for i := 40; i < 8192; i++ {            // page 0: records and alignment padding
				offs = append(offs, i)
			}
			rng := rand.New(rand.NewPCG(1, uint64(len(file))))
			for range samples {
				offs = append(offs, rng.IntN(len(orig)))
			}
			b := append([]byte(nil), orig...)
			for _, off := range offs {
				masks := []byte{0xFF, 0x01, 0x80}
				switch {
				case off >= LongHeaderSize && off < 8192:
					masks = masks[:1]
				case off%8192 < shortHeaderSize:
					masks = masks[:2]
				}
				for _, mask := range masks {
					b[off] ^= mask
					v, err := verifyChunks(n, 1<<20, b, len(b))
					b[off] ^= mask
					if err != nil {
						if !errors.Is(err, ErrDamagedWAL) {
							t.Errorf("byte %#x ^ %#x: got %v, want an error wrapping ErrDamagedWAL", off, mask, err)
						}
						continue
					}
					if !unverifiable(intact, v, off) {
						t.Errorf("byte %#x ^ %#x (LSN %s): got nil, want damage found", off, mask, intact.start+LSN(off))
					}
				}
			}
		})
	}
}

// unverifiable reports whether the byte at off of a segment, which verified
// as intact, may change without the verifier noticing; damaged is the
// verifier of the changed segment.
func unverifiable(intact, damaged *SegmentVerifier, off int) bool {
	if off >= 24 && off < 32 {
		return true // the system identifier, which Check compares when the caller knows it
	}
	if intact.state == afterEnd && int64(off) >= intact.endOff {
		return true
	}
	if off%intact.blcksz < shortHeaderSize || off < LongHeaderSize {
		return false // page headers are always checked
	}
	if int64(off) < intact.contEnd {
		return true
	}
	// A byte of a record that runs past the end, as this one or, when the
	// damage lengthened a record, as the damaged one.
	return damaged.state == inRecord && damaged.rec.lsn <= damaged.start+LSN(off)
}

func TestVerifyRealSegmentDamage(t *testing.T) {
	seg8 := readTestdata(t, "000000010000000000000008")
	seg7 := readTestdata(t, "000000010000000000000007")
	n8 := mustName(t, "000000010000000000000008")
	n7 := mustName(t, "000000010000000000000007")
	tests := []struct {
		name    string
		n       Name
		b       []byte
		wantErr error
		wantMsg string
	}{
		{"zeroed page 40", n8, zeroRange(seg8, 40*8192, 41*8192), ErrDamagedWAL, "0/00850000"},
		{"zeroed page 50", n8, zeroRange(seg8, 50*8192, 51*8192), ErrDamagedWAL, "at 0/00864000"},
		{"zeroed tail", n8, zeroRange(seg8, 100*8192, len(seg8)), ErrDamagedWAL, "0/008C8000"},
		{"zeroed record", n8, zeroRange(seg8, 0x28, 0x28+24), ErrDamagedWAL, "WAL ends early at 0/00800028"},
		{"truncated to 1000", n8, seg8[:1000], ErrSegmentSize, "the file ends at 0/008003E8 after 1000 bytes: want 1 MiB"},
		{"truncated page", n8, seg8[:8192], ErrSegmentSize, "after 8192 bytes"},
		{"truncated by one", n8, seg8[:len(seg8)-1], ErrSegmentSize, "after 1048575 bytes"},
		{"truncated to 10", n8, seg8[:10], ErrNotWAL, "first page header"},
		{"empty", n8, nil, ErrNotWAL, "first page header"},
		{"one byte more", n8, append(seg8[:len(seg8):len(seg8)], 0), ErrSegmentSize, "goes on past the end of the segment at 0/00900000"},
		{"wrong name", n7, seg8, ErrWrongSegment, "first page header"},
		{"after the switch", n7, flip(seg7, 0xF4F58+100), ErrDamagedWAL, "byte at 0/007F4FBC after the switch record is FF"},
		{"after the switch, later page", n7, flip(seg7, 0xFE000), ErrDamagedWAL, "byte at 0/007FE000 after the switch record"},
		{"switch record", n7, flip(seg7, 0xF4F40+16), ErrDamagedWAL, "record at 0/007F4F40: incorrect CRC"},
		{"page address", n7, flip(seg7, 0x2008), ErrDamagedWAL, "page header at 0/00702000: unexpected page address"},
	}
	for _, tt := range tests {
		err := VerifySegment(tt.n, tt.b)
		if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrDamagedWAL) || !strings.Contains(errString(err), tt.wantMsg) {
			t.Errorf("%s: got %v, want an error wrapping %v and ErrDamagedWAL containing %q", tt.name, err, tt.wantErr, tt.wantMsg)
		}
		// The streaming verifier, told the size, agrees, but for files too
		// short to tell VerifySegment the size.
		if len(tt.b) < LongHeaderSize {
			continue
		}
		if _, got := verifyChunks(tt.n, 1<<20, tt.b, 7); errString(got) != errString(err) {
			t.Errorf("%s: 7-byte writes: got %v, want %v", tt.name, got, err)
		}
	}
}

func zeroRange(b []byte, from, to int) []byte {
	c := append([]byte(nil), b...)
	clear(c[from:to])
	return c
}

func flip(b []byte, off int) []byte {
	c := append([]byte(nil), b...)
	c[off] ^= 0xFF
	return c
}

func TestVerifyDamageError(t *testing.T) {
	b := flip(readTestdata(t, "000000010000000000000007"), 0x28+30)
	err := VerifySegment(mustName(t, "000000010000000000000007"), b)
	var de *DamageError
	if !errors.As(err, &de) {
		t.Fatalf("got %v, want a *DamageError", err)
	}
	want := DamageError{Segment: "000000010000000000000007", LSN: 0x700028,
		Problem: "record at 0/00700028: incorrect CRC 2FAF16FD, computed 95F73892"}
	if *de != want {
		t.Errorf("got %+v, want %+v", *de, want)
	}
	if got, want := err.Error(), "damaged WAL in 000000010000000000000007: record at 0/00700028: incorrect CRC 2FAF16FD, computed 95F73892"; got != want {
		t.Errorf("Error(): got %q, want %q", got, want)
	}
}

func TestUpdateHeader(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	h := make([]byte, recordHeaderSize)
	for i := range 10000 {
		for j := range h {
			h[j] = byte(rng.Uint32())
		}
		if i == 0 {
			clear(h)
		}
		crc := rng.Uint32()
		if got, want := updateHeader(headerTables(), crc, h), crc32.Update(crc, castagnoli(), h[:recordCRCOffset]); got != want {
			t.Fatalf("updateHeader(%08X, %x): got %08X, want %08X", crc, h[:recordCRCOffset], got, want)
		}
	}
}

func TestVerifyChunkingAgrees(t *testing.T) {
	orig := readTestdata(t, "000000010000000000000008")
	n := mustName(t, "000000010000000000000008")
	rng := rand.New(rand.NewPCG(2, 2))
	for _, off := range []int{-1, 0x28, 0x1FF8, 0x2000, 0x2010, 0x2018, 0x5000, 0xF0000, len(orig) - 5} {
		b := orig
		if off >= 0 {
			b = flip(orig, off)
		}
		_, want := verifyChunks(n, 1<<20, b, len(b))
		for _, chunk := range []int{1, 7, 8192, 3 * 4096} {
			if _, got := verifyChunks(n, 1<<20, b, chunk); errString(got) != errString(want) {
				t.Errorf("flip at %#x, %d-byte writes: got %v, want %v", off, chunk, got, want)
			}
		}
		// Writes of random lengths.
		v := NewSegmentVerifier(n, 1<<20)
		for rest := b; len(rest) > 0; {
			k := min(1+rng.IntN(20000), len(rest))
			if _, err := v.Write(rest[:k]); err != nil {
				break
			}
			rest = rest[k:]
		}
		if got := v.Close(); errString(got) != errString(want) {
			t.Errorf("flip at %#x, random writes: got %v, want %v", off, got, want)
		}
	}
}

func TestVerifyWriteErrors(t *testing.T) {
	b := readTestdata(t, "000000010000000000000007")
	n := mustName(t, "000000010000000000000007")

	// Damage is reported by the Write that completes its page, then again.
	d := flip(b, 0x2008)
	v := NewSegmentVerifier(n, 1<<20)
	if k, err := v.Write(d[:0x3000]); k != 0x3000 || err != nil {
		t.Errorf("Write before the end of the damaged page: got %d, %v, want %d, nil", k, err, 0x3000)
	}
	k, err := v.Write(d[0x3000:])
	if k != 0x4000-0x3000 || !errors.Is(err, ErrDamagedWAL) {
		t.Errorf("Write of the end of the damaged page: got %d, %v, want %d and ErrDamagedWAL", k, err, 0x4000-0x3000)
	}
	if k, again := v.Write(d[:1]); k != 0 || again != err {
		t.Errorf("Write after damage: got %d, %v, want 0, %v", k, again, err)
	}
	if got := v.Close(); got != err {
		t.Errorf("Close: got %v, want %v", got, err)
	}
	if got := v.Close(); got != err {
		t.Errorf("second Close: got %v, want %v", got, err)
	}

	v = NewSegmentVerifier(n, 1<<20)
	if _, err := v.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Write(b[:1]); err == nil {
		t.Errorf("Write after Close: got nil, want an error")
	}

	// Arguments that cannot name a segment.
	for _, tt := range []struct {
		n       string
		segSize int64
	}{
		{"00000002.history", 1 << 20},
		{"000000010000000000000002.00000028.backup", 1 << 20},
		{"000000010000000000000007", 3 << 20},
		{"000000010000000000001007", 1 << 20},
	} {
		v := NewSegmentVerifier(mustName(t, tt.n), tt.segSize)
		_, werr := v.Write(b)
		cerr := v.Close()
		if !errors.Is(werr, ErrInvalidName) || cerr != werr || errors.Is(werr, ErrDamagedWAL) {
			t.Errorf("NewSegmentVerifier(%s, %d): got %v, %v, want ErrInvalidName and not ErrDamagedWAL", tt.n, tt.segSize, werr, cerr)
		}
	}
	if err := VerifySegment(Name{}, b); !errors.Is(err, ErrInvalidName) {
		t.Errorf("VerifySegment(Name{}): got %v, want ErrInvalidName", err)
	}
}

func TestVerifyShortSegments(t *testing.T) {
	// The first page of a 16 MiB segment is intact so far, not complete.
	b := readTestdata(t, "000000010000000000000001.head16")
	n := mustName(t, "000000010000000000000001")
	v := NewSegmentVerifier(n, 16<<20)
	if _, err := v.Write(b); err != nil {
		t.Errorf("Write: got %v, want nil", err)
	}
	if err := v.Close(); !errors.Is(err, ErrSegmentSize) || !strings.Contains(err.Error(), "after 8192 bytes: want 16 MiB") {
		t.Errorf("Close: got %v, want ErrSegmentSize", err)
	}
	if err := VerifySegment(n, b); !errors.Is(err, ErrSegmentSize) {
		t.Errorf("VerifySegment: got %v, want ErrSegmentSize", err)
	}
	// The size is the header's, so a 1 MiB prefix is no segment.
	seg8 := readTestdata(t, "000000010000000000000008")
	v = NewSegmentVerifier(mustName(t, "000000010000000000000008"), 16<<20)
	if _, err := v.Write(seg8); !errors.Is(err, ErrSegmentSize) || !strings.Contains(err.Error(), "has 1 MiB segments, want 16 MiB") {
		t.Errorf("1 MiB segment verified as 16 MiB: got %v, want ErrSegmentSize", err)
	}
}

func TestVerifyAllocations(t *testing.T) {
	b := newWALGen(t, genOptions{segSize: 1 << 20}).fillMixed().bytes()
	n := mustName(t, "000000010000000000000007")
	// The verifier itself, and for writes that split pages one page: as
	// many for 2500 records as for one.
	if allocs := testing.AllocsPerRun(10, func() {
		if err := VerifySegment(n, b); err != nil {
			t.Fatal(err)
		}
	}); allocs > 1 {
		t.Errorf("VerifySegment: got %v allocations, want at most 1", allocs)
	}
	if allocs := testing.AllocsPerRun(10, func() {
		if _, err := verifyChunks(n, 1<<20, b, 1000); err != nil {
			t.Fatal(err)
		}
	}); allocs > 2 {
		t.Errorf("1000-byte writes: got %v allocations, want at most 2", allocs)
	}
}

// walGen builds synthetic WAL segments as PostgreSQL writes them: page
// headers with continuation flags and lengths, records of random bytes with
// correct headers, prev-links and CRCs, zeros after a switch record.
type walGen struct {
	t        testing.TB
	rng      *rand.Rand
	data     *rand.ChaCha8
	seg      []byte
	blcksz   int
	start    LSN
	magic    uint16
	tli      TimeLine
	nextInfo uint16 // flags for the next page header, besides the continuation flag
	off      int    // where the next byte goes
	prev     LSN    // the last record written
	rest     []byte // the part of the last record that did not fit in the segment
	recs     []LSN  // every record that starts in the segment
}

type genOptions struct {
	segSize   int // default 1 MiB
	blcksz    int // default 8192
	seg       SegNo
	tli       TimeLine // of the pages; default 1
	version   int      // default 15
	cont      []byte   // the rest of a record begun in the previous segment
	prev      LSN      // the last record before the segment; default 0x100 before it
	overwrite bool     // set the overwrite flag on the first page
	cutCont   bool     // write only the part of cont on the first page, as a crash would
	seed      uint64
}

func newWALGen(t testing.TB, o genOptions) *walGen {
	t.Helper()
	if o.segSize == 0 {
		o.segSize = 1 << 20
	}
	if o.blcksz == 0 {
		o.blcksz = 8192
	}
	if o.seg == 0 {
		o.seg = 7
	}
	if o.tli == 0 {
		o.tli = 1
	}
	if o.version == 0 {
		o.version = 15
	}
	magic, ok := VersionMagic(o.version)
	if !ok {
		t.Fatalf("no magic for PostgreSQL %d", o.version)
	}
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], o.seed)
	g := &walGen{t: t, rng: rand.New(rand.NewPCG(o.seed, 7)), data: rand.NewChaCha8(seed),
		seg: make([]byte, o.segSize), blcksz: o.blcksz, start: o.seg.Start(int64(o.segSize)),
		magic: magic, tli: o.tli, prev: o.prev}
	if g.prev == 0 {
		g.prev = g.start - 0x100
	}
	if o.overwrite {
		g.nextInfo = InfoFirstIsOverwriteContRecord
	}
	g.pageHeader(uint32(len(o.cont)))
	if o.cutCont {
		g.off += copy(g.seg[g.off:g.blcksz], o.cont)
		g.nextInfo |= InfoFirstIsOverwriteContRecord
	} else {
		g.emit(o.cont)
	}
	g.align()
	return g
}

func (g *walGen) bytes() []byte { return g.seg }

func (g *walGen) full() bool { return g.off >= len(g.seg) }

func (g *walGen) name() Name {
	size := int64(len(g.seg))
	n, err := ParseName(SegmentName(g.tli, SegmentOf(g.start, size), size))
	if err != nil {
		g.t.Fatal(err)
	}
	return n
}

// pageHeader writes the header of the page that starts at g.off; rem is
// how much of a record continues onto it.
func (g *walGen) pageHeader(rem uint32) {
	info := g.nextInfo | InfoBkpRemovable
	g.nextInfo = 0
	if rem > 0 {
		info |= InfoFirstIsContRecord
	}
	if g.off == 0 {
		h := LongHeader{Magic: g.magic, Info: info | InfoLongHeader, TLI: g.tli, PageAddr: g.start, RemLen: rem,
			SystemID: 7710793034807477968, SegmentSize: uint32(len(g.seg)), BlockSize: uint32(g.blcksz)}
		b, _ := h.MarshalBinary()
		g.off += copy(g.seg, b)
		return
	}
	p := g.seg[g.off:]
	le := binary.LittleEndian
	le.PutUint16(p[0:], g.magic)
	le.PutUint16(p[2:], info)
	le.PutUint32(p[4:], uint32(g.tli))
	le.PutUint64(p[8:], uint64(g.start)+uint64(g.off))
	le.PutUint32(p[16:], rem)
	g.off += shortHeaderSize
}

// emit writes b, the rest of a record, across as many pages as it takes. What
// does not fit in the segment is kept in g.rest.
func (g *walGen) emit(b []byte) {
	for len(b) > 0 {
		if g.full() {
			g.rest = b
			return
		}
		if g.off%g.blcksz == 0 {
			g.pageHeader(uint32(len(b)))
		}
		end := g.off - g.off%g.blcksz + g.blcksz
		k := copy(g.seg[g.off:end], b)
		g.off += k
		b = b[k:]
	}
}

func (g *walGen) align() {
	g.off = (g.off + maxAlign - 1) &^ (maxAlign - 1)
}

// begin moves to where the next record starts, writing a page header if it
// is at the start of a page, and returns the record's LSN.
func (g *walGen) begin() LSN {
	g.t.Helper()
	g.align()
	if g.full() {
		g.t.Fatalf("segment full")
	}
	if g.off%g.blcksz == 0 {
		g.pageHeader(0)
	}
	return g.start + LSN(g.off)
}

// makeRecord returns a record with dataLen random bytes after the header.
func (g *walGen) makeRecord(rmid, info byte, dataLen int) []byte {
	rec := make([]byte, recordHeaderSize+dataLen)
	le := binary.LittleEndian
	le.PutUint32(rec[0:], uint32(len(rec)))
	le.PutUint32(rec[4:], g.rng.Uint32())
	le.PutUint64(rec[8:], uint64(g.prev))
	rec[16], rec[17] = info, rmid
	g.data.Read(rec[recordHeaderSize:])
	crc := crc32.Update(0, castagnoli(), rec[recordHeaderSize:])
	le.PutUint32(rec[recordCRCOffset:], crc32.Update(crc, castagnoli(), rec[:recordCRCOffset]))
	return rec
}

// record writes a record with dataLen bytes of data and returns its LSN.
func (g *walGen) record(rmid, info byte, dataLen int) LSN {
	g.t.Helper()
	lsn := g.begin()
	g.emit(g.makeRecord(rmid, info, dataLen))
	g.prev = lsn
	g.recs = append(g.recs, lsn)
	return lsn
}

// switchRecord writes an XLOG_SWITCH record; the rest of the segment stays
// zeros.
func (g *walGen) switchRecord() LSN {
	lsn := g.record(rmXLog, xlogSwitch, 0)
	g.off = len(g.seg)
	return lsn
}

// room returns how many bytes a record starting at the next position has on
// its page.
func (g *walGen) room() int {
	off := (g.off + maxAlign - 1) &^ (maxAlign - 1)
	r := g.blcksz - off%g.blcksz
	if off%g.blcksz == 0 {
		r -= shortHeaderSize
		if off == 0 {
			r -= LongHeaderSize - shortHeaderSize
		}
	}
	return r
}

// leave writes records until the next record has free bytes left on its
// page (free a multiple of 8; 0 for a record at the start of the next page).
func (g *walGen) leave(free int) {
	g.t.Helper()
	for {
		r := g.room()
		if r-free >= recordHeaderSize {
			g.record(1, 0, r-free-recordHeaderSize)
			return
		}
		g.record(1, 0, r+100) // onto the next page, and try again there
	}
}

// abort writes the start of a record, extra bytes longer than what is left of
// its page, and no more: the record a crash cut short. The next page gets the
// overwrite flag, as the server writes it at the end of recovery.
func (g *walGen) abort(extra int) LSN {
	g.t.Helper()
	r := g.room()
	lsn := g.begin()
	rec := g.makeRecord(1, 0, r+extra-recordHeaderSize)
	g.off += copy(g.seg[g.off:g.off+r], rec)
	g.nextInfo |= InfoFirstIsOverwriteContRecord
	return lsn // not the prev-link of the next record, which is g.prev
}

// recordSize returns a realistic length for record data: mostly small
// records of tuples, some larger ones, a few full-page images.
func (g *walGen) recordSize() int {
	switch x := g.rng.IntN(100); {
	case x < 70:
		return 30 + g.rng.IntN(120)
	case x < 90:
		return 150 + g.rng.IntN(450)
	case x < 98:
		return 600 + g.rng.IntN(2400)
	default:
		return 3000 + g.rng.IntN(5300)
	}
}

// fillMixed writes records of recordSize lengths until the segment is full;
// the last one runs past its end.
func (g *walGen) fillMixed() *walGen {
	for !g.full() {
		// Resource managers other than XLOG, which has the switch record.
		g.record(byte(1+g.rng.IntN(maxBuiltinRmgr)), byte(g.rng.IntN(16))<<4, g.recordSize())
	}
	return g
}

// fillSmall writes records of 50 to 150 bytes, the worst case for the
// verifier's cost per record.
func (g *walGen) fillSmall() *walGen {
	for !g.full() {
		g.record(10, 0, 26+g.rng.IntN(100))
	}
	return g
}

func (g *walGen) verify(t *testing.T, wantErr string) *SegmentVerifier {
	t.Helper()
	return verifyAs(t, g.name(), g.bytes(), wantErr)
}

// verifyAs verifies b whole and in 1, 7 and 1000 byte writes, expecting
// the same verdict: nil for wantErr "", else an error containing wantErr.
func verifyAs(t *testing.T, n Name, b []byte, wantErr string) *SegmentVerifier {
	t.Helper()
	v, err := verifyChunks(n, int64(len(b)), b, len(b))
	switch {
	case wantErr == "" && err != nil:
		t.Errorf("got %v, want nil", err)
	case wantErr != "" && (!errors.Is(err, ErrDamagedWAL) || !strings.Contains(err.Error(), wantErr)):
		t.Errorf("got %v, want ErrDamagedWAL containing %q", err, wantErr)
	}
	for _, chunk := range []int{1, 7, 1000} {
		if _, got := verifyChunks(n, int64(len(b)), b, chunk); errString(got) != errString(err) {
			t.Errorf("%d-byte writes: got %v, want %v", chunk, got, err)
		}
	}
	return v
}

func TestVerifySynthetic(t *testing.T) {
	t.Run("mixed records", func(t *testing.T) {
		g := newWALGen(t, genOptions{}).fillMixed()
		v := g.verify(t, "")
		if v.records != len(g.recs)-1 || v.state != inRecord || v.rec.lsn != g.recs[len(g.recs)-1] {
			t.Errorf("got %d records and %s open, want %d and %s", v.records, v.rec.lsn, len(g.recs)-1, g.recs[len(g.recs)-1])
		}
	})
	t.Run("record header split across pages", func(t *testing.T) {
		for _, free := range []int{8, 16} {
			g := newWALGen(t, genOptions{})
			g.leave(free)
			lsn := g.record(1, 0, 100)
			if got := int(lsn) % g.blcksz; got != g.blcksz-free {
				t.Fatalf("record at page offset %d, want %d", got, g.blcksz-free)
			}
			g.leave(free)
			g.record(1, 0, 0) // a header alone, split
			g.leave(free)
			g.switchRecord() // a split switch record
			g.verify(t, "")
		}
	})
	t.Run("record at the start of a page", func(t *testing.T) {
		g := newWALGen(t, genOptions{})
		g.leave(0)
		lsn := g.record(1, 0, 50)
		if int(lsn)%g.blcksz != shortHeaderSize {
			t.Fatalf("record at %s, want one after a page header", lsn)
		}
		g.fillMixed().verify(t, "")
	})
	t.Run("record over several pages", func(t *testing.T) {
		g := newWALGen(t, genOptions{})
		g.record(1, 0, 100)
		g.record(10, 0, 5*8192) // a record of 5 pages and more
		g.leave(0)
		g.record(10, 0, 3*(8192-shortHeaderSize)-recordHeaderSize) // ends at the end of a page
		g.fillMixed().verify(t, "")
	})
	t.Run("record longer than the segment", func(t *testing.T) {
		g := newWALGen(t, genOptions{})
		g.record(1, 0, 100)
		g.record(10, 0, 3<<20)
		v := g.verify(t, "")
		if v.state != inRecord || v.rec.totLen != 3<<20+recordHeaderSize {
			t.Errorf("got state %d, length %d, want the long record open", v.state, v.rec.totLen)
		}
		// The next segment is all continuation.
		h := newWALGen(t, genOptions{seg: 8, cont: g.rest})
		if len(h.rest) == 0 || !h.full() {
			t.Fatalf("segment 8 holds the whole record")
		}
		if v := h.verify(t, ""); v.state != inContinuation || v.contEnd != -1 {
			t.Errorf("segment 8: got state %d, want inContinuation", v.state)
		}
	})
	t.Run("record into the next segment", func(t *testing.T) {
		for _, size := range []int{300, 8192, 3 * 8192} {
			g := newWALGen(t, genOptions{seed: uint64(size)})
			for g.off < len(g.seg)-200 {
				g.record(1, 0, g.rng.IntN(100))
			}
			g.record(10, 0, size)
			g.verify(t, "")
			if len(g.rest) == 0 {
				t.Fatalf("the last record fits in the segment")
			}
			// The next segment starts with the rest, across pages if long.
			h := newWALGen(t, genOptions{seg: 8, cont: g.rest, prev: g.prev})
			h.fillMixed()
			v := h.verify(t, "")
			if v.contEnd < LongHeaderSize+int64(len(g.rest)) {
				t.Errorf("continuation ends at %#x, want after %d bytes", v.contEnd, len(g.rest))
			}
		}
	})
	t.Run("continuation from the previous segment", func(t *testing.T) {
		cont := make([]byte, 20000)
		g := newWALGen(t, genOptions{cont: cont}).fillMixed()
		// Pages 0 and 1 hold 8152 and 8168 bytes of it, page 2 the rest.
		if v := g.verify(t, ""); v.contEnd != 2*8192+shortHeaderSize+(20000-8152-8168) {
			t.Errorf("continuation ends at %#x", v.contEnd)
		}
		g.seg[8192+16]++ // the remaining length on page 1
		g.verify(t, "page at 0/00702000 continues a record with 11849 bytes, but the record continued from the previous segment needs 11848 more")
		// A crash cut it short, and the server wrote new WAL after it.
		g = newWALGen(t, genOptions{cont: cont, cutCont: true}).fillMixed()
		g.verify(t, "")
	})
	t.Run("overwrite contrecord", func(t *testing.T) {
		for _, extra := range []int{8, 100, 9000} {
			g := newWALGen(t, genOptions{})
			g.record(1, 0, 100)
			g.leave(16)
			g.abort(extra)
			g.record(rmXLog, 0xD0, 16) // XLOG_OVERWRITE_CONTRECORD
			g.fillMixed().verify(t, "")
		}
		// The aborted record began in the previous segment.
		g := newWALGen(t, genOptions{overwrite: true})
		g.fillMixed().verify(t, "")
	})
	t.Run("switch", func(t *testing.T) {
		g := newWALGen(t, genOptions{})
		g.record(1, 0, 100)
		g.switchRecord()
		v := g.verify(t, "")
		if v.state != afterSwitch || v.endOff != LongHeaderSize+128+recordHeaderSize {
			t.Errorf("got state %d, end at %#x", v.state, v.endOff)
		}
		// A switch record first in a segment.
		g = newWALGen(t, genOptions{})
		g.switchRecord()
		g.verify(t, "")
	})
	t.Run("switch across segments", func(t *testing.T) {
		for _, free := range []int{8, 16} {
			g := newWALGen(t, genOptions{})
			for g.off < len(g.seg)-4000 { // to the last page
				g.record(1, 0, 100+g.rng.IntN(1000))
			}
			g.leave(free)
			g.switchRecord()
			if len(g.rest) != recordHeaderSize-free {
				t.Fatalf("got %d bytes of the switch record in the next segment, want %d", len(g.rest), recordHeaderSize-free)
			}
			g.verify(t, "")
			// The next segment is the rest of the switch record, then zeros.
			h := newWALGen(t, genOptions{seg: 8, cont: g.rest})
			h.off = len(h.seg)
			if v := h.verify(t, ""); v.state != afterSwitch {
				t.Errorf("segment 8: got state %d, want afterSwitch", v.state)
			}
			h.seg[5000] = 1
			h.verify(t, "byte at 0/00801388 after the switch record is 01")
			// A record that is no switch, then zeros, is WAL that ends early.
			tail := append([]byte(nil), g.rest...)
			tail[len(tail)-7] = 1 // xl_rmid
			h = newWALGen(t, genOptions{seg: 8, cont: tail})
			h.off = len(h.seg)
			h.verify(t, "WAL ends early at 0/00800")
		}
	})
	t.Run("block sizes", func(t *testing.T) {
		for _, blcksz := range []int{1 << 10, 4 << 10, 32 << 10, 64 << 10} {
			g := newWALGen(t, genOptions{blcksz: blcksz, seed: uint64(blcksz)}).fillMixed()
			if v := g.verify(t, ""); v.page != int64(len(g.seg)/blcksz) {
				t.Errorf("%d-byte pages: checked %d pages, want %d", blcksz, v.page, len(g.seg)/blcksz)
			}
		}
	})
	t.Run("segment sizes", func(t *testing.T) {
		for _, size := range []int{2 << 20, 16 << 20} {
			g := newWALGen(t, genOptions{segSize: size, seg: 0x1FF}).fillSmall()
			if err := VerifySegment(g.name(), g.bytes()); err != nil {
				t.Errorf("%s segments: got %v, want nil", formatSize(int64(size)), err)
			}
		}
	})
	t.Run("versions", func(t *testing.T) {
		for version := 12; version <= 18; version++ {
			g := newWALGen(t, genOptions{version: version})
			g.record(maxBuiltinRmgr, 0, 100)
			g.record(1, 0, 100)
			g.fillMixed().verify(t, "")

			// Custom resource managers exist since PostgreSQL 15.
			g = newWALGen(t, genOptions{version: version})
			g.record(minCustomRmgr, 0, 100)
			want := ""
			if version < 15 {
				want = "invalid resource manager ID 128"
			}
			g.fillMixed().verify(t, want)
		}
	})
	t.Run("new timeline", func(t *testing.T) {
		// The first segment of timeline 2 starts with a page of timeline 1.
		g := newWALGen(t, genOptions{})
		g.record(1, 0, 100)
		g.leave(0)
		g.tli = 2
		g.fillMixed()
		n := g.name()
		n.TLI = 2
		verifyAs(t, n, g.bytes(), "")
		n.TLI = 1
		verifyAs(t, n, g.bytes(), "page header at 0/00702000: timeline 2 is later than the segment's timeline 1")
	})
}

func TestVerifySyntheticPartial(t *testing.T) {
	g := newWALGen(t, genOptions{})
	g.record(1, 0, 100)
	g.record(1, 0, 9000)
	lsn := g.begin()
	stale := newWALGen(t, genOptions{seg: 3}).fillMixed().bytes() // a recycled file
	copy(g.seg[16384:], stale[16384:])
	n := g.name()
	g.verify(t, fmt.Sprintf("WAL ends early at %s", lsn))
	n.Kind = Partial
	v := verifyAs(t, n, g.bytes(), "")
	if v.state != afterEnd || v.endOff != int64(lsn-g.start) || v.records != 2 {
		t.Errorf("got state %d, end at %#x, %d records, want the end at %s after 2 records", v.state, v.endOff, v.records, lsn)
	}
	// The WAL before the end is checked as a segment's.
	g.seg[100] ^= 1
	verifyAs(t, n, g.bytes(), "incorrect CRC")

	// WAL that ends at the end of a page stops at a stale page.
	g = newWALGen(t, genOptions{})
	g.record(1, 0, 100)
	g.leave(0)
	copy(g.seg[8192:], stale[8192:])
	verifyAs(t, n, g.bytes(), "")
	g.verify(t, "page header at 0/00702000: unexpected page address 0/00302000")
	// But not where a record continues.
	g = newWALGen(t, genOptions{})
	g.record(1, 0, 17000)
	copy(g.seg[16384:], stale[16384:])
	verifyAs(t, n, g.bytes(), "page header at 0/00704000: unexpected page address 0/00304000")
}

// TestVerifySyntheticDamage breaks one rule at a time in a segment that has
// every kind of page: records across pages, a split record header, and a
// switch record at the end.
func TestVerifySyntheticDamage(t *testing.T) {
	type layout struct {
		split, long, after LSN // a split header, a 3-page record, the record after it
		fresh, sw          LSN // a record at the start of a page, the switch record after it
	}
	build := func() (*walGen, layout) {
		g := newWALGen(t, genOptions{})
		var l layout
		g.record(1, 0, 100)
		g.leave(8)
		l.split = g.record(1, 0, 200)
		l.long = g.record(10, 0, 3*8192)
		l.after = g.record(1, 0, 50)
		for g.off < 20*8192 {
			g.record(1, 0, g.rng.IntN(500))
		}
		g.leave(0)
		l.fresh = g.record(1, 0, 30)
		l.sw = g.switchRecord()
		return g, l
	}
	g0, l := build()
	page := func(lsn LSN) int { return int(lsn-g0.start) / g0.blcksz * g0.blcksz }
	at := func(lsn LSN) int { return int(lsn - g0.start) }
	le := binary.LittleEndian
	tests := []struct {
		name    string
		damage  func(b []byte)
		wantErr string
	}{
		{"nothing", func([]byte) {}, ""},
		{"data on a continuation page", func(b []byte) { b[page(l.long)+8192+1000] ^= 1 },
			fmt.Sprintf("record at %s: incorrect CRC", l.long)},
		{"split header, second half", func(b []byte) { b[page(l.split)+8192+shortHeaderSize+12] ^= 1 },
			fmt.Sprintf("record at %s: incorrect CRC", l.split)},
		{"split header, prev-link", func(b []byte) { b[page(l.split)+8192+shortHeaderSize] ^= 1 },
			fmt.Sprintf("record at %s: prev-link", l.split)},
		{"length too short", func(b []byte) { le.PutUint32(b[at(l.after):], 23) },
			fmt.Sprintf("record at %s: invalid length 23, want at least 24", l.after)},
		{"length too long", func(b []byte) { le.PutUint32(b[at(l.after):], 1<<30) },
			"more than the 1 GiB a server can read"},
		{"length of a split header", func(b []byte) { le.PutUint32(b[at(l.split):], 8) },
			fmt.Sprintf("record at %s: invalid length 8", l.split)},
		{"length longer", func(b []byte) { b[at(l.after)] += 8 },
			fmt.Sprintf("record at %s", l.after)},
		{"resource manager", func(b []byte) { b[at(l.after)+17] = 50 },
			fmt.Sprintf("record at %s: invalid resource manager ID 50", l.after)},
		{"prev-link", func(b []byte) { b[at(l.after)+8] ^= 8 },
			fmt.Sprintf("record at %s: prev-link %s, want %s", l.after, l.long^8, l.long)},
		{"first prev-link", func(b []byte) { le.PutUint64(b[LongHeaderSize+8:], uint64(g0.start)) },
			"prev-link 0/00700000, want one before the segment's start 0/00700000"},
		{"no continuation flag", func(b []byte) { b[page(l.long)+8192+2] &^= InfoFirstIsContRecord; clear(b[page(l.long)+8192+16:][:4]) },
			fmt.Sprintf("page at %s has no continuation flag, but the record at %s needs", g0.start+LSN(page(l.long)+8192), l.long)},
		{"continuation length", func(b []byte) { b[page(l.long)+2*8192+16] ^= 1 },
			"continues a record with"},
		{"continuation flag on a fresh page", func(b []byte) {
			p := page(l.fresh)
			b[p+2] |= InfoFirstIsContRecord
			b[p+16] = 8
		}, "has the continuation flag (8 bytes), but no record continues onto it"},
		{"continuation and overwrite flags", func(b []byte) { b[page(l.long)+8192+2] |= InfoFirstIsOverwriteContRecord },
			"both the continuation and the overwrite flag"},
		{"remaining length without the flag", func(b []byte) { b[page(l.fresh)+16] = 1 },
			"remaining length 1 without the continuation flag"},
		{"header padding", func(b []byte) { b[page(l.fresh)+21] = 1 }, "padding bytes 00000100 are not zero"},
		{"long header padding", func(b []byte) { b[22] = 1 }, "page header at 0/00700000: padding bytes"},
		{"alignment padding", func(b []byte) { b[at(l.after)+recordHeaderSize+50+3] = 1 },
			"alignment padding at"},
		{"magic", func(b []byte) { b[4*8192] ^= 1 }, "page header at 0/00708000: magic D111, want D110"},
		{"info bits", func(b []byte) { b[4*8192+3] = 1 }, "has undefined flag bits"},
		{"long header flag", func(b []byte) { b[4*8192+2] |= InfoLongHeader }, "has the long header flag"},
		{"timeline back", func(b []byte) { b[6*8192+4] = 0 }, "page header at 0/0070C000: timeline 0 after timeline 1"},
		{"timeline ahead", func(b []byte) { b[6*8192+4] = 2 }, "timeline 2 is later than the segment's timeline 1"},
		{"page address", func(b []byte) { b[6*8192+9] ^= 0x20 }, "unexpected page address 0/0070E000"},
		{"zero page", func(b []byte) { clear(b[8*8192 : 9*8192]) }, "0/00710000"},
		{"zero page after a record", func(b []byte) {
			p := page(l.fresh)
			clear(b[p : p+8192])
		}, fmt.Sprintf("WAL ends early at %s: the page header there is zeros", g0.start+LSN(page(l.fresh)))},
		{"zero record", func(b []byte) { clear(b[at(l.after) : at(l.after)+24+50]) },
			fmt.Sprintf("WAL ends early at %s", l.after)},
		{"zero switch record", func(b []byte) { clear(b[at(l.sw) : at(l.sw)+24]) },
			fmt.Sprintf("WAL ends early at %s", l.sw)},
		{"after the switch", func(b []byte) { b[len(b)-1] = 1 }, "byte at 0/007FFFFF after the switch record is 01"},
		{"switch, then a record", func(b []byte) {
			copy(b[at(l.sw)+24:], b[at(l.after):at(l.after)+24+50])
		}, fmt.Sprintf("byte at %s after the switch record", l.sw+24)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := build()
			tt.damage(g.seg)
			g.verify(t, tt.wantErr)
		})
	}
}

func BenchmarkVerifySegment(b *testing.B) {
	segs := []struct {
		name string
		n    Name
		seg  []byte
	}{
		{"mixed-16MiB", Name{}, newWALGen(b, genOptions{segSize: 16 << 20, seg: 1}).fillMixed().bytes()},
		{"small-16MiB", Name{}, newWALGen(b, genOptions{segSize: 16 << 20, seg: 1}).fillSmall().bytes()},
		{"real-1MiB", mustName(b, "000000010000000000000008"), nil},
	}
	real, err := os.ReadFile(filepath.Join("testdata", "000000010000000000000008"))
	if err != nil {
		b.Fatal(err)
	}
	segs[2].seg = real
	for _, s := range segs {
		n := s.n
		if n.Kind == 0 {
			n = Name{Kind: Segment, TLI: 1, Seg: 1}
		}
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(int64(len(s.seg)))
			b.ReportAllocs()
			for b.Loop() {
				if err := VerifySegment(n, s.seg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
