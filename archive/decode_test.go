package archive

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// compressible returns n bytes that zstd shrinks, but not to nothing.
func compressible(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.IntN(16))
	}
	return b
}

func incompressibleBytes(n int) []byte {
	r := rand.New(rand.NewPCG(7, 8))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// zstdStream compresses in as one frame that does not name its content
// size, as a streaming zstd writer does.
func zstdStream(t testing.TB, in []byte) []byte {
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(in)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compressAll(t testing.TB, in []byte) []byte {
	z, err := io.ReadAll(Compress(bytes.NewReader(in)))
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func TestDecompressBytes(t *testing.T) {
	// A segment of mixed chunks: compressed frames and raw-block frames.
	mixed := append(compressible(3<<20+77, 1), incompressibleBytes(2<<20)...)
	for _, tc := range []struct {
		name string
		in   []byte
		z    func(testing.TB, []byte) []byte
	}{
		{"empty", nil, compressAll},
		{"one byte", []byte("x"), compressAll},
		{"zeros, one frame", make([]byte, frameSize), compressAll},
		{"several frames, short last", compressible(9<<20+123, 3), compressAll},
		{"compressed and raw frames", mixed, compressAll},
		{"zstd tool stream without content size", compressible(3<<20, 4), zstdStream},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecompressBytes(tc.z(t, tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.in) {
				t.Errorf("got %d bytes, want the %d bytes compressed", len(got), len(tc.in))
			}
		})
	}
}

func TestDecompressBytesSkipsSkippableFrames(t *testing.T) {
	in := compressible(2<<20, 5)
	z := compressAll(t, in)
	skip := binary.LittleEndian.AppendUint32(nil, 0x184D2A50)
	skip = binary.LittleEndian.AppendUint32(skip, 5)
	skip = append(skip, "hello"...)
	got, err := DecompressBytes(append(skip, z...))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, in) {
		t.Errorf("got %d bytes, want %d", len(got), len(in))
	}
}

func TestDecompressBytesCorrupt(t *testing.T) {
	in := compressible(3<<20, 6)
	z := compressAll(t, in)
	raw := compressAll(t, incompressibleBytes(1<<20))
	hugeFCS := append([]byte(nil), raw...)
	binary.LittleEndian.PutUint32(hugeFCS[5:], 1<<31) // content size field of the raw frame
	for _, tc := range []struct {
		name string
		z    []byte
	}{
		{"checksum", flip(z, len(z)-2)},
		{"compressed block", flip(z, len(z)/2)},
		{"truncated", z[:len(z)-100]},
		{"trailing garbage", append(append([]byte(nil), z...), "garbage!"...)},
		{"not zstd", bytes.Repeat([]byte("walship "), 1000)},
		{"raw block data", flip(raw, 1000)},
		{"content size over 1 GiB", hugeFCS},
		{"stream without content size, checksum", flip(zstdStream(t, in), -2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecompressBytes(tc.z)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

// flip returns a copy of b with the byte at i (from the end when negative)
// changed.
func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	if i < 0 {
		i += len(c)
	}
	c[i] ^= 0x55
	return c
}

// FuzzDecompressBytes checks the frame walker against the streaming decoder:
// whatever the input, DecompressBytes must not panic, and when it succeeds
// the streaming decoder must read the same bytes.
func FuzzDecompressBytes(f *testing.F) {
	// Small seeds: the fuzzer slows down a lot on large inputs.
	f.Add(compressAll(f, compressible(5000, 9)))
	f.Add(append(rawFrame(nil, incompressibleBytes(700)), compressAll(f, compressible(900, 10))...))
	f.Add(zstdStream(f, []byte("walship walship walship")))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x01, 0x09, 0x00, 0x00, 'x'})
	f.Fuzz(func(t *testing.T, z []byte) {
		got, err := DecompressBytes(z)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
			return
		}
		d, err := Decompress(bytes.NewReader(z))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		want, err := io.ReadAll(d)
		if err != nil {
			t.Fatalf("DecompressBytes accepted what the stream decoder refuses: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("DecompressBytes gave %d bytes, the stream decoder %d", len(got), len(want))
		}
	})
}
