package archive

import (
	"bytes"
	"errors"
	"io"
	"testing"

	upstream "github.com/klauspost/compress/s2"
)

// s2All returns in as push stores a segment with --compress s2.
func s2All(t testing.TB, in []byte) []byte {
	t.Helper()
	z, err := io.ReadAll(compressSummedAs(bytes.NewReader(in), S2))
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// decodeS2 decodes z through Read and WriteTo, which must agree, as a
// stream read as it comes (every chunk's CRC checked) or, trusting, on
// the strength of its sum chunk (as OpenWAL reads a local file).
func decodeS2(t testing.TB, z []byte, trusting bool) ([]byte, error) {
	t.Helper()
	return decodeBothWith(t, z, func(r io.Reader) *FrameReader {
		if trusting {
			return newSummedFrameReader(S2, r)
		}
		return NewFrameReaderOf(S2, r)
	})
}

// What push writes as S2 is the S2 framing format, which the upstream
// reader (and so the s2d tool) reads back byte for byte, and which
// walship's reader reads back both ways; compressible chunks are
// compressed, incompressible ones stored, and the last chunk is the
// segment's remainder.
func TestS2RoundTrip(t *testing.T) {
	mixed := append(compressible(3<<20, 5), incompressibleBytes(2<<20+12345)...)
	for name, in := range map[string][]byte{
		"empty":        nil,
		"one byte":     {'x'},
		"compressible": compressible(4<<20, 6),
		"random":       incompressibleBytes(3 << 20),
		"mixed":        mixed,
	} {
		z := s2All(t, in)
		if !bytes.HasPrefix(z, []byte(s2Magic)) {
			t.Fatalf("%s: the stream does not start with S2's identifier: %q", name, z[:min(len(z), 10)])
		}
		up, err := io.ReadAll(upstream.NewReader(bytes.NewReader(z)))
		if err != nil || !bytes.Equal(up, in) {
			t.Errorf("%s: upstream s2.Reader: %d bytes, %v; want the %d bytes in", name, len(up), err, len(in))
		}
		for _, trusting := range []bool{false, true} {
			got, err := decodeS2(t, z, trusting)
			if err != nil || !bytes.Equal(got, in) {
				t.Errorf("%s (trusting %v): %d bytes, %v; want the %d bytes in", name, trusting, len(got), err, len(in))
			}
		}
		c, ok := parseS2Sum(z[len(z)-s2SumSize:])
		if want, _ := ChecksumOf(bytes.NewReader(in)); !ok || c != want {
			t.Errorf("%s: sum chunk %+v (%v), want %+v", name, c, ok, want)
		}
		switch name {
		case "compressible":
			if len(z) > len(in)*6/10 {
				t.Errorf("compressible: %d bytes stored as %d, want under 60 %%", len(in), len(z))
			}
		case "random":
			if len(z) < len(in) || len(z) > len(in)+1024 {
				t.Errorf("random: %d bytes stored as %d, want the chunks stored as they are", len(in), len(z))
			}
		}
	}
	// Stored chunks, compressed ones and the sum chunk, by their types.
	z := s2All(t, mixed)
	var types []byte
	for off := len(s2Magic); off < len(z); {
		n := int(z[off+1]) | int(z[off+2])<<8 | int(z[off+3])<<16
		types = append(types, z[off])
		off += 4 + n
	}
	want := []byte{s2Compressed, s2Compressed, s2Compressed, s2Stored, s2Stored, s2Stored, s2SumChunk}
	if !bytes.Equal(types, want) {
		t.Errorf("chunk types % x, want % x", types, want)
	}
}

// A changed byte anywhere in an S2 file is an error matching ErrCorrupt,
// never other bytes: in a chunk's data, its CRC (unless the sum chunk
// stands for it, when it changes nothing), its header, the identifier, or
// the sum chunk. So is a file cut short, a chunk dropped or two chunks
// swapped, which every chunk's CRC alone would pass.
func TestS2Corrupt(t *testing.T) {
	in := append(compressible(2<<20, 8), incompressibleBytes(1<<20)...)
	z := s2All(t, in)
	for _, trusting := range []bool{false, true} {
		for i := 0; i < len(z); i += len(z)/50 + 1 {
			for _, at := range []int{i, len(s2Magic) + 5, len(z) - 3} { // also a CRC and the sum
				got, err := decodeS2(t, flip(z, at), trusting)
				if err == nil && !bytes.Equal(got, in) {
					t.Fatalf("byte %d flipped (trusting %v): other bytes read without an error", at, trusting)
				}
				if err != nil && !errors.Is(err, ErrCorrupt) {
					t.Fatalf("byte %d flipped: %v, want ErrCorrupt", at, err)
				}
				if err == nil && !(trusting && at == len(s2Magic)+5) {
					t.Fatalf("byte %d flipped (trusting %v): read without an error", at, trusting)
				}
			}
		}
		// Without its sum chunk too: walship writes one in every .s2 file.
		for _, n := range []int{0, 5, len(s2Magic), len(s2Magic) + 100, len(z) / 2, len(z) - s2SumSize, len(z) - 1} {
			if _, err := decodeS2(t, z[:n], trusting); !errors.Is(err, ErrCorrupt) {
				t.Errorf("cut to %d of %d bytes (trusting %v): %v, want ErrCorrupt", n, len(z), trusting, err)
			}
		}
	}
	// The chunks, by their offsets.
	var at []int
	for off := len(s2Magic); off < len(z); {
		at = append(at, off)
		off += 4 + (int(z[off+1]) | int(z[off+2])<<8 | int(z[off+3])<<16)
	}
	at = append(at, len(z))
	chunk := func(i int) []byte { return z[at[i]:at[i+1]] }
	dropped := slices_concat(z[:at[0]], chunk(1), chunk(2), chunk(3))
	swapped := slices_concat(z[:at[0]], chunk(1), chunk(0), chunk(2), chunk(3))
	for name, bad := range map[string][]byte{"a chunk dropped": dropped, "two chunks swapped": swapped} {
		if _, err := decodeS2(t, bad, false); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
	// Not S2 at all: a zstd file read as S2, and garbage.
	for name, bad := range map[string][]byte{"zstd": compressSummedAll(t, in[:4096]), "text": []byte("not a stream at all")} {
		if _, err := decodeS2(t, bad, false); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s read as S2: %v, want ErrCorrupt", name, err)
		}
	}
}

func slices_concat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// FuzzS2Reader: whatever the input, the S2 reader does not panic, its Read
// and WriteTo agree, an error matches ErrCorrupt, and what it accepts the
// upstream reader reads the same.
func FuzzS2Reader(f *testing.F) {
	f.Add(s2All(f, compressible(5000, 9)))
	f.Add(s2All(f, incompressibleBytes(700)))
	f.Add([]byte(s2Magic))
	f.Add(append([]byte(s2Magic), 0x01, 0x05, 0x00, 0x00, 0, 0, 0, 0, 'x'))
	f.Fuzz(func(t *testing.T, z []byte) {
		got, err := decodeS2(t, z, false)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
			return
		}
		want, err := io.ReadAll(upstream.NewReader(bytes.NewReader(z)))
		if err != nil {
			t.Fatalf("walship's reader accepted what s2.Reader refuses: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("walship's reader gave %d bytes, s2.Reader %d", len(got), len(want))
		}
	})
}
