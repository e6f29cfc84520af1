package archive

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/klauspost/compress/zstd"
)

// compressible returns n bytes that Compress shrinks, but not to nothing:
// words drawn at random from a few, with numbers between (matches and
// literals, in every frame; TestCompressibleCompresses holds it to that).
// Uniform bytes of a small alphabet would not do: zstd's fastest level
// entropy-codes literals only where it finds matches, so they come out as
// raw blocks.
func compressible(n int, seed uint64) []byte {
	words := strings.Fields("walship ships whole WAL segments into an archive atomically and durably with fsync and rename")
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, 0, n+32)
	for len(b) < n {
		b = append(b, words[r.IntN(len(words))]...)
		b = strconv.AppendUint(append(b, ' '), uint64(r.IntN(100000)), 10)
		b = append(b, ' ')
	}
	return b[:n]
}

// The helper makes what its tests need: every frame of its output
// compresses (none is stored in raw blocks), to well under half.
func TestCompressibleCompresses(t *testing.T) {
	in := compressible(4<<20, 1)
	for off := 0; off < len(in); off += frameSize {
		chunk := in[off : off+frameSize]
		if incompressible(chunk) {
			t.Fatalf("frame at %d: judged incompressible", off)
		}
		if z := encodeFrame(nil, chunk); len(z) > len(chunk)/2 {
			t.Errorf("frame at %d: %d bytes compress to %d, want under half", off, len(chunk), len(z))
		}
	}
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

// decodeBoth decodes z through FrameReader's Read and through its WriteTo
// (parallel), which must agree, and returns the result.
func decodeBoth(t testing.TB, z []byte) ([]byte, error) {
	t.Helper()
	return decodeBothWith(t, z, NewFrameReader)
}

// decodeBothWith is decodeBoth with the FrameReaders newReader makes.
func decodeBothWith(t testing.TB, z []byte, newReader func(io.Reader) *FrameReader) ([]byte, error) {
	t.Helper()
	viaRead, errRead := io.ReadAll(struct{ io.Reader }{newReader(bytes.NewReader(z))})
	var viaWriteTo bytes.Buffer
	// Two Reads first, so WriteTo starts inside a frame.
	fr := newReader(bytes.NewReader(z))
	head := make([]byte, 10)
	n, errHead := io.ReadFull(fr, head)
	viaWriteTo.Write(head[:n])
	_, errWriteTo := fr.WriteTo(&viaWriteTo)
	if errHead != nil && errHead != io.EOF && errHead != io.ErrUnexpectedEOF {
		errWriteTo = errHead
	}
	fr.Close()
	if (errRead == nil) != (errWriteTo == nil) || (errRead == nil && !bytes.Equal(viaRead, viaWriteTo.Bytes())) {
		t.Fatalf("Read gave %d bytes and %v, WriteTo %d bytes and %v", len(viaRead), errRead, viaWriteTo.Len(), errWriteTo)
	}
	return viaRead, errRead
}

func TestFrameReader(t *testing.T) {
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
			got, err := decodeBoth(t, tc.z(t, tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.in) {
				t.Errorf("got %d bytes, want the %d bytes compressed", len(got), len(tc.in))
			}
		})
	}
}

func TestFrameReaderSkipsSkippableFrames(t *testing.T) {
	in := compressible(2<<20, 5)
	z := compressAll(t, in)
	skip := binary.LittleEndian.AppendUint32(nil, 0x184D2A50)
	skip = binary.LittleEndian.AppendUint32(skip, 5)
	skip = append(skip, "hello"...)
	got, err := decodeBoth(t, append(skip, z...))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, in) {
		t.Errorf("got %d bytes, want %d", len(got), len(in))
	}
}

func TestFrameReaderCorrupt(t *testing.T) {
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
			_, err := decodeBoth(t, tc.z)
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

// FuzzFrameReader checks the frame walker against zstd's stream decoder:
// whatever the input, FrameReader must not panic, its Read and WriteTo must
// agree, and when it succeeds the stream decoder must read the same bytes.
func FuzzFrameReader(f *testing.F) {
	// Small seeds: the fuzzer slows down a lot on large inputs.
	f.Add(compressAll(f, compressible(5000, 9)))
	f.Add(append(rawFrame(nil, incompressibleBytes(700)), compressAll(f, compressible(900, 10))...))
	f.Add(zstdStream(f, []byte("walship walship walship")))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x01, 0x09, 0x00, 0x00, 'x'})
	f.Fuzz(func(t *testing.T, z []byte) {
		got, err := decodeBoth(t, z)
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
			t.Fatalf("FrameReader accepted what the stream decoder refuses: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("FrameReader gave %d bytes, the stream decoder %d", len(got), len(want))
		}
	})
}

// An error of the source is passed on as it is, not as corruption, by Read
// and by WriteTo alike: callers retry I/O errors.
func TestFrameReaderSourceError(t *testing.T) {
	z := compressAll(t, compressible(5<<20, 11))
	boom := errors.New("connection reset")
	for _, cut := range []int{0, 10, len(z) / 2, len(z) - 1} {
		src := func() io.Reader { return io.MultiReader(bytes.NewReader(z[:cut]), iotest.ErrReader(boom)) }
		if _, err := io.ReadAll(struct{ io.Reader }{NewFrameReader(src())}); !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
			t.Errorf("Read, source failing after %d bytes: got %v, want %v", cut, err, boom)
		}
		if _, err := NewFrameReader(src()).WriteTo(io.Discard); !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
			t.Errorf("WriteTo, source failing after %d bytes: got %v, want %v", cut, err, boom)
		}
	}
}

// A failing writer stops WriteTo with the writer's error.
func TestFrameReaderWriteError(t *testing.T) {
	z := compressAll(t, compressible(9<<20, 12))
	full := errors.New("no space left on device")
	w := &failAfter{n: 3 << 20, err: full}
	if _, err := NewFrameReader(bytes.NewReader(z)).WriteTo(w); !errors.Is(err, full) {
		t.Errorf("got %v, want %v", err, full)
	}
}

type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, f.err
	}
	f.n -= len(p)
	return len(p), nil
}

func compressSummedAll(t testing.TB, in []byte) []byte {
	rc := compressSummed(bytes.NewReader(in))
	defer rc.Close()
	z, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// decodeTrusting decodes z, known to end with its sum frame, as OpenWAL
// does a local file, through Read and WriteTo.
func decodeTrusting(t testing.TB, z []byte) ([]byte, error) {
	t.Helper()
	return decodeBothWith(t, z, func(r io.Reader) *FrameReader { return newSummedFrameReader(Zstd, r) })
}

// A stream read on the strength of its sum frame alone (the frames' own
// checksums not computed) never yields other bytes than it holds: a byte
// changed anywhere is an error matching ErrCorrupt, or (in a frame's
// checksum field, now unread) changes nothing. Without its sum frame it
// is corrupt, where a reader not told of one reads it.
func TestSummedFrameReader(t *testing.T) {
	in := append(compressible(2<<20+5, 12), incompressibleBytes(1<<20)...)
	z := compressSummedAll(t, in)
	if got, err := decodeTrusting(t, z); err != nil || !bytes.Equal(got, in) {
		t.Fatalf("intact stream: %v, %d bytes of %d", err, len(got), len(in))
	}
	detected := 0
	for i := 0; i < len(z); i += len(z)/150 + 1 { // headers, blocks, checksums and the sum frame alike
		got, err := decodeTrusting(t, flip(z, i))
		switch {
		case err == nil && !bytes.Equal(got, in):
			t.Fatalf("byte %d of %d changed: read without error, and %d bytes differ from what was stored", i, len(z), len(got))
		case err != nil && !errors.Is(err, ErrCorrupt):
			t.Fatalf("byte %d changed: %v, want ErrCorrupt", i, err)
		case err != nil:
			detected++
		}
	}
	if detected == 0 {
		t.Fatal("no changed byte was detected")
	}
	for _, tc := range []struct {
		name string
		z    []byte
	}{
		{"content", flip(z, len(z)/3)},
		{"sum frame", flip(z, len(z)-3)},
		{"sum frame cut off", z[:len(z)-sumFrameSize]},
		{"a frame missing", z[frameLen(t, z):]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeTrusting(t, tc.z); !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v, want ErrCorrupt", err)
			}
		})
	}
	if got, err := decodeBoth(t, z[:len(z)-sumFrameSize]); err != nil || !bytes.Equal(got, in) {
		t.Errorf("without its sum frame, a reader not told of one: %v, want the content", err)
	}
}

// frameLen returns the length of the first frame of z.
func frameLen(t *testing.T, z []byte) int {
	br := bufio.NewReader(bytes.NewReader(z))
	buf, _, err := readFrame(br)
	if err != nil {
		t.Fatal(err)
	}
	defer bufPool.Put(buf)
	return len(*buf)
}
