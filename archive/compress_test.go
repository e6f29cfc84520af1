package archive

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestCompressRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 9<<20+123) // several frames and a short last one
	for i := range random {
		random[i] = byte(r.IntN(16)) // compressible, not trivially
	}
	for _, in := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte{0}, frameSize), random} {
		zr := Compress(bytes.NewReader(in))
		z, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("compress %d bytes: %v", len(in), err)
		}
		d, err := Decompress(bytes.NewReader(z))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(d)
		if err != nil {
			t.Fatalf("decompress %d bytes: %v", len(in), err)
		}
		if !bytes.Equal(got, in) {
			t.Errorf("round trip of %d bytes gave %d different bytes", len(in), len(got))
		}
	}
}

func TestDecompressCorrupt(t *testing.T) {
	in := bytes.Repeat([]byte("walship "), 100000)
	z, err := io.ReadAll(Compress(bytes.NewReader(in)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		z    []byte
	}{
		{"flipped byte", func() []byte { b := bytes.Clone(z); b[len(b)/2] ^= 0x40; return b }()},
		{"flipped checksum", func() []byte { b := bytes.Clone(z); b[len(b)-1] ^= 1; return b }()},
		{"truncated", z[:len(z)-7]},
		{"not zstd", []byte("this is not a zstd frame at all")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Decompress(bytes.NewReader(tc.z))
			if err == nil {
				_, err = io.ReadAll(d)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

// A failing source is an I/O problem, worth a retry, not corruption.
func TestDecompressSourceErrorIsNotCorruption(t *testing.T) {
	in := bytes.Repeat([]byte("walship "), 500000)
	z, err := io.ReadAll(Compress(bytes.NewReader(in)))
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("connection reset")
	src := io.MultiReader(bytes.NewReader(z[:len(z)/2]), &failing{boom})
	d, err := Decompress(src)
	if err == nil {
		_, err = io.ReadAll(d)
	}
	if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Errorf("got %v, want the source's error and not ErrCorrupt", err)
	}
}

type failing struct{ err error }

func (f *failing) Read([]byte) (int, error) { return 0, f.err }

func TestCompressPassesReadError(t *testing.T) {
	boom := errors.New("disk gone")
	_, err := io.ReadAll(Compress(io.MultiReader(strings.NewReader("abc"), &failing{boom})))
	if !errors.Is(err, boom) {
		t.Errorf("got %v, want %v", err, boom)
	}
}

func TestParseCompression(t *testing.T) {
	for in, want := range map[string]Compression{"zstd": Zstd, "": Zstd, "none": None, "s2": S2} {
		got, err := ParseCompression(in)
		if err != nil || got != want {
			t.Errorf("ParseCompression(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseCompression("lz4"); err == nil {
		t.Error("ParseCompression(lz4) succeeded, want an error")
	}
	// S2 is for segments: everything else asked for as S2 is zstd.
	for c, want := range map[Compression]Compression{S2: Zstd, Zstd: Zstd, None: None} {
		if got := c.ForFiles(); got != want {
			t.Errorf("%v.ForFiles() = %v, want %v", c, got, want)
		}
	}
}

// Incompressible chunks are stored as raw zstd blocks: still a valid zstd
// stream with its checksum, which any zstd decoder reads and checks.
func TestCompressIncompressible(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	in := make([]byte, 16<<20)
	for i := range in {
		in[i] = byte(r.Uint32())
	}
	copy(in[8<<20:], bytes.Repeat([]byte("compressible "), 1<<17)) // a chunk that compresses
	z, err := io.ReadAll(Compress(bytes.NewReader(in)))
	if err != nil {
		t.Fatal(err)
	}
	if len(z) > len(in)-frameSize || len(z) < len(in)*8/10 {
		t.Errorf("compressed %d bytes to %d, want raw frames and one compressed chunk", len(in), len(z))
	}
	d, err := Decompress(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(d)
	if err != nil || !bytes.Equal(got, in) {
		t.Fatalf("round trip: %v, equal %v", err, bytes.Equal(got, in))
	}
	for _, off := range []int{20, len(z) / 4, len(z) - 2} { // in a raw block, and the checksum
		bad := bytes.Clone(z)
		bad[off] ^= 0x10
		d, err := Decompress(bytes.NewReader(bad))
		if err == nil {
			_, err = io.ReadAll(d)
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("byte %d flipped: %v, want ErrCorrupt", off, err)
		}
	}
	for _, n := range []int{1, 128 << 10, 128<<10 + 1, 300 << 10} {
		b := in[:n]
		z := rawFrame(nil, b)
		d, err := Decompress(bytes.NewReader(z))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(d)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("raw frame of %d bytes: %v", n, err)
		}
	}
}
