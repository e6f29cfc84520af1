package archive

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// piecesWriter is a BuffersWriter that records what it was given.
type piecesWriter struct {
	bytes.Buffer
	calls  int      // WriteBuffers calls
	shared [][]byte // the pieces given, as given (not copied)
}

func (p *piecesWriter) WriteBuffers(bufs [][]byte) (int64, error) {
	p.calls++
	var n int64
	for _, b := range bufs {
		p.shared = append(p.shared, b)
		m, _ := p.Write(b)
		n += int64(m)
	}
	return n, nil
}

// within reports whether b lies inside in's memory.
func within(b, in []byte) bool {
	if len(b) == 0 || len(in) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(in)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= lo && p+uintptr(len(b)) <= lo+uintptr(len(in))
}

// WriteFramesTo writes the very stream Read returns, to a plain writer and
// to a BuffersWriter alike; to the latter, raw frames go as pieces of the
// chunks read (no copy), compressed frames as one Write each.
func TestWriteFramesToIsTheSameStream(t *testing.T) {
	mixed := slices.Concat(incompressibleBytes(3<<20+77), compressible(2<<20, 5), incompressibleBytes(frameSize))
	inputs := map[string][]byte{
		"empty":          nil,
		"one byte":       []byte("x"),
		"one raw block":  incompressibleBytes(128 << 10),
		"frame of zeros": make([]byte, frameSize),
		"compressible":   compressible(5<<20+123, 9),
		"incompressible": incompressibleBytes(4 << 20),
		"mixed":          mixed,
	}
	for name, in := range inputs {
		for _, summed := range []bool{false, true} {
			mk := Compress
			if summed {
				mk = compressSummed
			}
			want, err := io.ReadAll(mk(bytes.NewReader(in)))
			if err != nil {
				t.Fatal(err)
			}

			var plain bytes.Buffer
			n, err := mk(bytes.NewReader(in)).(FramesWriter).WriteFramesTo(&plain)
			if err != nil || n != int64(plain.Len()) || !bytes.Equal(plain.Bytes(), want) {
				t.Errorf("%s (summed %v), to a plain writer: n %d, err %v, same stream %v", name, summed, n, err, bytes.Equal(plain.Bytes(), want))
			}

			var pw piecesWriter
			src := &recordingReader{r: bytes.NewReader(in)}
			n, err = mk(src).(FramesWriter).WriteFramesTo(&pw)
			if err != nil || n != int64(pw.Len()) || !bytes.Equal(pw.Bytes(), want) {
				t.Errorf("%s (summed %v), to a BuffersWriter: n %d, err %v, same stream %v", name, summed, n, err, bytes.Equal(pw.Bytes(), want))
			}
			// A raw frame's blocks are the buffers the source was read
			// into, passed on uncopied.
			uncopied := 0
			for _, p := range pw.shared {
				for _, b := range src.bufs {
					if within(p, b) {
						uncopied += len(p)
						break
					}
				}
			}
			rawBytes := 0
			switch name {
			case "incompressible", "one raw block":
				rawBytes = len(in)
			case "mixed": // the frames that start or end in the compressible part compress
				rawBytes = 4 << 20
			}
			if uncopied < rawBytes || (rawBytes == 0 && pw.calls != 0) {
				t.Errorf("%s (summed %v): %d bytes written from the source's buffers in %d WriteBuffers calls, want %d",
					name, summed, uncopied, pw.calls, rawBytes)
			}
		}
	}
}

// recordingReader remembers the buffers it was read into.
type recordingReader struct {
	r    io.Reader
	bufs [][]byte
}

func (r *recordingReader) Read(p []byte) (int, error) {
	r.bufs = append(r.bufs, p)
	return r.r.Read(p)
}

// failingWriter fails its first write and counts writes.
type failingWriter struct{ err error }

func (f *failingWriter) Write([]byte) (int, error)            { return 0, f.err }
func (f *failingWriter) WriteBuffers([][]byte) (int64, error) { return 0, f.err }

// A write error comes back as it is, and the source is not read to its end
// for nothing; a source error comes back as it is.
func TestWriteFramesToErrors(t *testing.T) {
	full := errors.New("no space left")
	for name, in := range map[string][]byte{"compressible": compressible(64<<20, 3), "incompressible": incompressibleBytes(64 << 20)} {
		cr := &CountingReader{R: bytes.NewReader(in)}
		_, err := Compress(cr).(FramesWriter).WriteFramesTo(&failingWriter{full})
		if !errors.Is(err, full) {
			t.Errorf("%s: got %v, want the writer's error", name, err)
		}
		if cr.N > 16<<20 {
			t.Errorf("%s: read %d of %d bytes after the first write failed, want it to stop within a few frames", name, cr.N, len(in))
		}
	}
	boom := errors.New("disk gone")
	var out bytes.Buffer
	_, err := Compress(io.MultiReader(strings.NewReader("abc"), &failing{boom})).(FramesWriter).WriteFramesTo(&out)
	if !errors.Is(err, boom) {
		t.Errorf("source error: got %v, want %v", err, boom)
	}
}

// Read and WriteFramesTo share one stream: whichever comes second goes on
// where the first stopped, and a closed reader reads nothing.
func TestWriteFramesToAfterRead(t *testing.T) {
	in := compressible(3<<20, 4)
	want, _ := io.ReadAll(Compress(bytes.NewReader(in)))

	c := Compress(bytes.NewReader(in))
	head := make([]byte, 100)
	if _, err := io.ReadFull(c, head); err != nil {
		t.Fatal(err)
	}
	var rest bytes.Buffer
	if _, err := c.(FramesWriter).WriteFramesTo(&rest); err != nil {
		t.Fatal(err)
	}
	if got := append(head, rest.Bytes()...); !bytes.Equal(got, want) {
		t.Errorf("Read then WriteFramesTo: %d bytes, want the stream's %d", len(got), len(want))
	}

	c = Compress(bytes.NewReader(in))
	var all bytes.Buffer
	if _, err := c.(FramesWriter).WriteFramesTo(&all); err != nil || !bytes.Equal(all.Bytes(), want) {
		t.Fatalf("WriteFramesTo: %v", err)
	}
	if n, err := c.Read(head); n != 0 || err != io.EOF {
		t.Errorf("Read after WriteFramesTo: %d, %v, want 0, EOF", n, err)
	}

	c = Compress(bytes.NewReader(in))
	c.Close()
	if n, err := c.Read(head); n != 0 || err == nil || err == io.EOF {
		t.Errorf("Read after Close: %d, %v, want an error", n, err)
	}
}
