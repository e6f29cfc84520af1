package wal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// fuzzBase is a whole segment the fuzzer damages with a patch script.
type fuzzBase struct {
	name Name
	seg  []byte
}

// fuzzBases returns the real segments and synthetic ones with small pages,
// which pack many pages, split headers, an overwritten record and a switch
// into few bytes.
func fuzzBases(f *testing.F) []fuzzBase {
	var bases []fuzzBase
	for _, file := range realSegments {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			f.Fatal(err)
		}
		bases = append(bases, fuzzBase{mustName(f, file), b})
	}
	g := newWALGen(f, genOptions{blcksz: 1 << 10})
	for range 40 {
		g.record(1, 0, g.rng.IntN(300))
	}
	g.leave(8)
	g.record(1, 0, 3000)
	g.abort(500)
	g.record(rmXLog, 0xD0, 16)
	g.leave(16)
	g.switchRecord()
	bases = append(bases, fuzzBase{g.name(), g.bytes()})
	h := newWALGen(f, genOptions{blcksz: 1 << 10, seg: 8, cont: make([]byte, 5000)}).fillMixed()
	return append(bases, fuzzBase{h.name(), h.bytes()})
}

// patch applies a script to a copy of seg. Each step is 4 bytes, an offset
// (3 bytes, little-endian, modulo the length) and an operation with its
// length, then the operation's data:
//
//	op 0: overwrite with the next len bytes
//	op 1: xor with the next len bytes
//	op 2: zero (len+1)*64 bytes
//	op 3: truncate to the offset
//	op 4: append len+1 zero bytes
func patch(seg, script []byte) []byte {
	b := append([]byte(nil), seg...)
	for len(b) > 0 && len(script) >= 4 {
		off := (int(script[0]) | int(script[1])<<8 | int(script[2])<<16) % len(b)
		op, n := script[3]>>5, int(script[3]&31)
		script = script[4:]
		data := script[:min(n, len(script))]
		switch op {
		case 0:
			copy(b[off:], data)
			script = script[len(data):]
		case 1:
			for i := range min(len(data), len(b)-off) {
				b[off+i] ^= data[i]
			}
			script = script[len(data):]
		case 2:
			clear(b[off:min(len(b), off+(n+1)*64)])
		case 3:
			b = b[:off]
		case 4:
			b = append(b, make([]byte, n+1)...)
		}
	}
	return b
}

// FuzzVerifySegment feeds the verifier damaged segments: a real or synthetic
// segment changed by a patch script (an empty one leaves it whole). Scripts
// rather than whole files keep the fuzzer's inputs small, which matters
// because it minimizes every new input it keeps, in time quadratic in its
// length. Whatever the bytes, the verifier must not panic, must work in
// proportion to them with one page of state, must give the same verdict
// however they are split into writes, and must explain a verdict other
// than nil as damage.
func FuzzVerifySegment(f *testing.F) {
	bases := fuzzBases(f)
	for i := range bases {
		f.Add(uint8(i), []byte{}, uint16(8191), uint8(0))
		for _, script := range [][]byte{
			{0x12, 0, 0, 1<<5 | 1, 0x01},             // long header, remaining length
			{0x28, 0, 0, 1<<5 | 1, 0x80},             // first record's length
			{0x30, 0x20, 0, 1<<5 | 2, 0xFF, 1},       // records on page 1, or page 8 of small pages
			{0x40, 0x4F, 0x0F, 1<<5 | 1, 0x01},       // near the switch of segment 7
			{0, 0x40, 0, 2<<5 | 31},                  // zero 2 KiB
			{0, 0, 0x08, 3 << 5},                     // truncate to 512 KiB
			{0, 0, 0, 4<<5 | 7},                      // 8 bytes too many
			{0x00, 0xE0, 0x0F, 0<<5 | 4, 1, 2, 3, 4}, // after a switch
		} {
			f.Add(uint8(i), script, uint16(100), uint8(0))
		}
	}
	f.Add(uint8(4), []byte{0, 0, 0, 3 << 5}, uint16(0), uint8(0))                  // an empty file
	f.Add(uint8(4), []byte{0, 0x14, 0, 3 << 5}, uint16(0), uint8(0))               // five small pages, 1-byte writes
	f.Add(uint8(5), []byte{0x10, 0, 0, 0<<5 | 2, 0x90, 0x13}, uint16(6), uint8(3)) // a longer continuation, as a .partial

	f.Fuzz(func(t *testing.T, base uint8, script []byte, chunk uint16, flags uint8) {
		// A few steps are damage enough, and the minimizer cuts the rest
		// off in one go.
		script = script[:min(len(script), 40)]
		s := bases[int(base)%len(bases)]
		b, n, segSize := patch(s.seg, script), s.name, int64(len(s.seg))
		if flags&2 != 0 {
			n.TLI++ // a later timeline may hold any page the name's does
		}
		if flags&1 != 0 {
			// A segment verified as a .partial, and the other way round.
			switch n.Kind {
			case Segment:
				n.Kind = Partial
			case Partial:
				n.Kind = Segment
			}
		}

		whole, err := verifyChunks(n, segSize, b, len(b)+1)
		if err != nil {
			var de *DamageError
			if !errors.As(err, &de) || !errors.Is(err, ErrDamagedWAL) {
				t.Fatalf("got %v, want a *DamageError", err)
			}
			if de.LSN < whole.start || de.LSN > whole.start+LSN(segSize) {
				t.Fatalf("got damage at %s, outside the segment at %s: %v", de.LSN, whole.start, err)
			}
		}
		// Work in proportion to the bytes, and one page of state.
		if whole.blcksz > 0 && whole.page > int64(len(b)/whole.blcksz) {
			t.Fatalf("checked %d pages of %d bytes", whole.page, len(b))
		}
		if whole.records > len(b)/recordHeaderSize || cap(whole.buf) > 64<<10 {
			t.Fatalf("got %d records, a %d-byte buffer for %d bytes", whole.records, cap(whole.buf), len(b))
		}

		// Splitting the writes changes nothing. Writes get bigger for
		// large inputs, to keep the number of calls bounded.
		size := max(1+int(chunk), len(b)>>14)
		if _, got := verifyChunks(n, segSize, b, size); errString(got) != errString(err) {
			t.Fatalf("%d-byte writes: got %v, whole: %v", size, got, err)
		}
	})
}
