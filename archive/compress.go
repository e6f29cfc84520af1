package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"runtime"
	"strings"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/walship/walship/internal/zstd"
)

var (
	errNotExist = fs.ErrNotExist
	errExist    = fs.ErrExist
)

// Compression says how files are stored in the archive.
type Compression int

// The compressions walship writes. Readers accept all of them, whatever a
// writer was told, so an archive filled by plain cp, or by pushes of
// several settings, keeps working.
const (
	Zstd Compression = iota // zstd frames with their content checksum, suffix ".zst"
	None                    // the file as it is, no suffix
	// S2 is the S2 framing format (klauspost/compress/s2, Snappy's
	// successor; s2d reads it): 1 MiB chunks, each with the CRC-32C of its
	// content, suffix ".s2". It stores about twice zstd's bytes of WAL at
	// a third of its CPU time. Only segments are stored so (see
	// PutNewWAL); their small companions (.history, .backup) stay zstd.
	S2
)

// ParseCompression parses a --compress value.
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "zstd", "zst", "":
		return Zstd, nil
	case "s2":
		return S2, nil
	case "none", "off":
		return None, nil
	}
	return 0, fmt.Errorf("unknown compression %q: use zstd, s2 or none", s)
}

// String returns the --compress value of c.
func (c Compression) String() string {
	switch c {
	case None:
		return "none"
	case S2:
		return "s2"
	}
	return "zstd"
}

// Suffix returns the file name suffix of files stored with c.
func (c Compression) Suffix() string {
	switch c {
	case None:
		return ""
	case S2:
		return ".s2"
	}
	return ".zst"
}

// ForFiles returns the compression that files other than WAL segments are
// stored with when c is asked for: S2 is for segments only (see S2), and
// stands for zstd elsewhere (.history and .backup files, tail increments,
// base backups), so that one WALSHIP_COMPRESS=s2 serves every command.
func (c Compression) ForFiles() Compression {
	if c == S2 {
		return Zstd
	}
	return c
}

// Suffixes lists the suffixes a reader tries for a WAL segment, most
// likely first. Other WAL files (.history, .backup) are never stored as
// S2, so readers do not look for them so (walPaths).
var Suffixes = []string{".zst", "", ".s2"}

// CutCompression returns a stored file's name without its compression
// suffix, and the compression that suffix says.
func CutCompression(name string) (string, Compression) {
	if base, ok := strings.CutSuffix(name, ".zst"); ok {
		return base, Zstd
	}
	if base, ok := strings.CutSuffix(name, ".s2"); ok {
		return base, S2
	}
	return name, None
}

// TrimCompression returns a stored file's name without its compression
// suffix: the name PostgreSQL knows it by.
func TrimCompression(name string) string {
	base, _ := CutCompression(name)
	return base
}

// CompressionOf returns the compression a stored file's name says.
func CompressionOf(name string) Compression {
	_, c := CutCompression(name)
	return c
}

// ErrCorrupt is returned when an archived file fails its checksum or cannot
// be decompressed.
var ErrCorrupt = errors.New("archived file is corrupt")

// frameSize is how much input goes into one zstd frame. Frames are
// compressed in parallel and concatenated, which every zstd decoder reads as
// one stream; each frame carries its own checksum.
const frameSize = 1 << 20

// encoderPool holds single-threaded encoders: parallelism comes from
// compressing several frames at once, which beats zstd's own block
// pipelining for 16 MiB inputs.
var encoderPool = sync.Pool{New: func() any {
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderCRC(true),
		zstd.WithEncoderConcurrency(1),
		// A frame is one chunk: a larger window only costs memory, which
		// a fresh process pays for in page faults.
		zstd.WithWindowSize(frameSize),
		zstd.WithLowerEncoderMem(true))
	if err != nil {
		panic(err) // only invalid options fail, and these are constant
	}
	return e
}}

// Compress returns a reader of the zstd-compressed bytes of r. Reading it
// returns r's read error, if any. Close stops the work early.
//
// The reader is also a FramesWriter, which a storage writing to a local
// file uses instead of Read.
func Compress(r io.Reader) io.ReadCloser { return &compressed{r: r, codec: zstdCodec{}} }

// compressSummed is Compress with a sum frame at the end of the stream
// (see WALChecksum): how WAL files are stored.
func compressSummed(r io.Reader) io.ReadCloser { return compressSummedAs(r, Zstd) }

// compressSummedAs is compressSummed in the format of c (Zstd or S2).
func compressSummedAs(r io.Reader, c Compression) io.ReadCloser {
	return &compressed{r: r, summed: true, codec: codecOf(c)}
}

// codecOf returns the frame codec of a compression other than None.
func codecOf(c Compression) frameCodec {
	if c == S2 {
		return s2Codec{}
	}
	return zstdCodec{}
}

// A frameCodec is what compressFrames needs of a format: a stream is
// start(), a frame for each chunk of input, and a sum frame at the end.
type frameCodec interface {
	// start returns what comes before the first frame (nil for none).
	start() []byte
	// frame stores the chunk in: in *out, or in pieces (the chunk itself
	// among them, uncopied) when it returns them. pieces says whether the
	// caller takes pieces for a stored chunk at all.
	frame(out *[]byte, in []byte, pieces bool) [][]byte
	// empty returns the stream's frames for an input of no bytes.
	empty() []byte
	// sum returns the sum frame of c.
	sum(c Checksum) []byte
}

// zstdCodec is zstd: frames of RFC 8878, each with its checksum.
type zstdCodec struct{}

func (zstdCodec) start() []byte { return nil }

func (zstdCodec) frame(out *[]byte, in []byte, pieces bool) [][]byte {
	switch raw := incompressible(in); {
	case raw && pieces:
		return rawFrameParts((*out)[:0], in)
	case raw:
		*out = rawFrame((*out)[:0], in)
	default:
		*out = encodeFrame((*out)[:0], in)
	}
	return nil
}

// An empty input still needs one (empty) frame to be a valid file.
func (zstdCodec) empty() []byte { return encodeFrame(nil, nil) }

func (zstdCodec) sum(c Checksum) []byte { return appendSumFrame(nil, c) }

// A FramesWriter is a reader that makes its bytes as it goes (Compress's)
// and can write them out instead of being read: each frame goes to w as it
// is made, with no pipe and no copy buffer between, and raw frames go to a
// BuffersWriter without being copied at all. It is not io.WriterTo on
// purpose: io.Copy would then prefer it over a destination's own ReadFrom
// (SFTP's, which keeps several writes in flight).
type FramesWriter interface {
	io.Reader
	// WriteFramesTo writes the whole stream to w, if no Read came first
	// (else what is left of it). An error is w's, or the source's.
	WriteFramesTo(w io.Writer) (int64, error)
}

// BuffersWriter is implemented by writers that take several buffers in one
// call (writev(2) on a file), which saves copying pieces into one buffer.
type BuffersWriter interface {
	io.Writer
	// WriteBuffers writes the buffers in order, as one Write of their
	// concatenation would.
	WriteBuffers(bufs [][]byte) (int64, error)
}

// compressed is the reader Compress returns: the first Read starts
// compressFrames on a goroutine, writing into a pipe; a WriteFramesTo
// before any Read runs it on the caller's writer.
type compressed struct {
	r      io.Reader
	summed bool
	codec  frameCodec
	pr     *io.PipeReader
	ran    bool // WriteFramesTo ran compressFrames
	closed bool
}

func (c *compressed) Read(p []byte) (int, error) {
	if c.pr == nil {
		switch {
		case c.closed:
			return 0, io.ErrClosedPipe
		case c.ran:
			return 0, io.EOF
		}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(compressFrames(pw, c.r, c.summed, c.codec)) }()
		c.pr = pr
	}
	return c.pr.Read(p)
}

// WriteFramesTo writes the compressed stream to w; see FramesWriter.
func (c *compressed) WriteFramesTo(w io.Writer) (int64, error) {
	if c.pr != nil || c.ran || c.closed {
		return io.Copy(w, c)
	}
	c.ran = true
	cw := &countingWriter{w: w}
	err := compressFrames(cw, c.r, c.summed, c.codec)
	return cw.n, err
}

func (c *compressed) Close() error {
	c.closed = true
	if c.pr != nil {
		return c.pr.Close()
	}
	return nil
}

// countingWriter counts what it writes, and passes WriteBuffers on.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) WriteBuffers(bufs [][]byte) (int64, error) {
	n, err := c.w.(BuffersWriter).WriteBuffers(bufs)
	c.n += n
	return n, err
}

// bufPool holds frame-sized buffers for input chunks and output frames.
// Reusing them matters more than it seems: fresh memory costs a page fault
// per 4 KiB, and on a VM that hands freed pages back to its host that was
// most of the cost of compressing a segment.
// Their capacity is the most a chunk's frame takes in either format.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, frameBufSize); return &b }}

// frameBufSize is the capacity of bufPool's buffers.
var frameBufSize = max(frameSize+frameSize/64+64, s2FrameMax)

// compressFrames reads r in frameSize chunks, compresses up to GOMAXPROCS
// chunks at a time in codec's format and writes the frames to w in order,
// then, if summed, the sum frame of what r read. Raw frames go to w in
// pieces, uncopied, when w is a countingWriter over a BuffersWriter
// (WriteFramesTo's case), or when the codec makes pieces anyway.
func compressFrames(w io.Writer, r io.Reader, summed bool, codec frameCodec) error {
	var sum contentSum
	if summed {
		sum.h = xxhash.New()
	}
	var vec BuffersWriter
	if cw, ok := w.(*countingWriter); ok {
		if _, ok := cw.w.(BuffersWriter); ok {
			vec = cw
		}
	}
	workers := min(runtime.GOMAXPROCS(0), 4)
	type job struct {
		in, out *[]byte
		raw     [][]byte // the frame in pieces (vec only): headers in out, blocks in in
		done    chan struct{}
	}
	jobs := make(chan *job, workers)
	errc := make(chan error, 1)
	stop := make(chan struct{}) // closed once a write failed: read no further
	sem := make(chan struct{}, workers)
	go func() {
		defer close(jobs)
		for {
			select {
			case <-stop:
				errc <- nil
				return
			default:
			}
			in := bufPool.Get().(*[]byte)
			*in = (*in)[:frameSize]
			n, err := io.ReadFull(r, *in)
			if n > 0 {
				*in = (*in)[:n]
				if summed {
					sum.add(*in)
				}
				j := &job{in: in, out: bufPool.Get().(*[]byte), done: make(chan struct{})}
				go func() {
					// Chunks are read ahead of the workers, but only
					// workers of them compress at once: each holds an
					// encoder, fresh memory in a new process.
					sem <- struct{}{}
					defer func() { <-sem }()
					j.raw = codec.frame(j.out, *j.in, vec != nil)
					close(j.done)
				}()
				jobs <- j
			} else {
				bufPool.Put(in)
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				errc <- nil
				return
			}
			if err != nil {
				errc <- err
				return
			}
		}
	}()
	var werr error
	stopped := false
	if start := codec.start(); start != nil {
		_, werr = w.Write(start)
	}
	wrote := false
	for j := range jobs {
		<-j.done
		if werr == nil {
			switch {
			case j.raw != nil && vec != nil:
				_, werr = vec.WriteBuffers(j.raw)
			case j.raw != nil:
				for _, p := range j.raw {
					if _, werr = w.Write(p); werr != nil {
						break
					}
				}
			default:
				_, werr = w.Write(*j.out)
			}
			wrote = true
		}
		if werr != nil && !stopped {
			stopped = true
			close(stop)
		}
		bufPool.Put(j.in)
		bufPool.Put(j.out)
	}
	if err := <-errc; err != nil {
		return err
	}
	if werr == nil && !wrote {
		if b := codec.empty(); b != nil {
			_, werr = w.Write(b)
		}
	}
	if werr == nil && summed {
		_, werr = w.Write(codec.sum(Checksum{Sum: sum.h.Sum64(), Size: sum.n}))
	}
	return werr
}

// compressFrame returns in as one zstd frame with its content checksum. A
// chunk that a sample shows to be incompressible (WAL of random or already
// compressed data) is stored in raw blocks instead: compressing it would
// cost more time than cp and save a few percent.
func compressFrame(dst, in []byte) []byte {
	if incompressible(in) {
		return rawFrame(dst, in)
	}
	return encodeFrame(dst, in)
}

// encodeFrame returns in as one zstd-compressed frame with its checksum.
func encodeFrame(dst, in []byte) []byte {
	e := encoderPool.Get().(*zstd.Encoder)
	defer encoderPool.Put(e)
	return e.EncodeAll(in, dst)
}

// sampleSize is how much of a chunk incompressible tries to compress.
const sampleSize = 32 << 10

// incompressible reports whether zstd would save less than a tenth of in,
// judging by samples at its start and middle.
func incompressible(in []byte) bool {
	if len(in) < 4*sampleSize {
		return false
	}
	e := encoderPool.Get().(*zstd.Encoder)
	defer encoderPool.Put(e)
	scratch := samplePool.Get().(*[]byte)
	defer samplePool.Put(scratch)
	var raw bool
	raw, *scratch = incompressibleInto(e, in, *scratch)
	return raw
}

// samplePool holds incompressible's output buffers.
var samplePool = sync.Pool{New: func() any { b := make([]byte, 0, sampleSize+sampleSize/64+64); return &b }}

// rawFrame returns in as a zstd frame of raw blocks (see rawFrameParts)
// appended to out.
func rawFrame(out, in []byte) []byte {
	var hdr [64]byte
	for _, p := range rawFrameParts(hdr[:0], in) {
		out = append(out, p...)
	}
	return out
}

// rawFrameParts returns in as a zstd frame of raw blocks (RFC 8878), in
// pieces: the frame header with the content size and the checksum flag,
// then each block of at most 128 KiB with its header, stored as it is,
// then the low 32 bits of in's XXH64. The headers are appended to hdr, the
// blocks are slices of in.
func rawFrameParts(hdr, in []byte) [][]byte {
	const maxBlock = 128 << 10
	hdr = binary.LittleEndian.AppendUint32(hdr[:0], 0xFD2FB528)
	// Frame header descriptor: 4-byte content size, single segment (the
	// window is the content), content checksum.
	hdr = append(hdr, 2<<6|1<<5|1<<2)
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(in)))
	var ends []int // where each block's header ends in hdr
	for off := 0; ; off += maxBlock {
		n := min(maxBlock, len(in)-off)
		h := uint32(n) << 3 // block type 0: raw
		if off+n == len(in) {
			h |= 1 // last block
		}
		hdr = append(hdr, byte(h), byte(h>>8), byte(h>>16))
		ends = append(ends, len(hdr))
		if off+n == len(in) {
			break
		}
	}
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(xxhash.Sum64(in)))
	parts := make([][]byte, 0, 2*len(ends)+1)
	start := 0
	for i, end := range ends {
		parts = append(parts, hdr[start:end], in[i*maxBlock:min((i+1)*maxBlock, len(in))])
		start = end
	}
	return append(parts, hdr[start:])
}

// Decompress returns a reader of the bytes that r holds compressed. A
// damaged stream or a checksum mismatch reads as an error matching
// ErrCorrupt.
//
// An error of r itself (a dropped connection, say) comes back as it is, not
// as ErrCorrupt: callers treat corruption as final and I/O errors as worth a
// retry.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	src := &errReader{r: r}
	d, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(2), zstd.WithDecoderMaxMemory(2<<30))
	if err != nil {
		return nil, err // only invalid options fail here
	}
	return &decompressor{d: d, src: src}, nil
}

type decompressor struct {
	d   *zstd.Decoder
	src *errReader
}

func (d *decompressor) Read(p []byte) (int, error) {
	n, err := d.d.Read(p)
	if err != nil && err != io.EOF {
		if serr := d.src.failed(); serr != nil {
			return n, serr
		}
		err = fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return n, err
}

// errReader remembers the first error other than io.EOF that r returned.
type errReader struct {
	r   io.Reader
	mu  sync.Mutex
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.mu.Lock()
		if e.err == nil {
			e.err = err
		}
		e.mu.Unlock()
	}
	return n, err
}

func (e *errReader) failed() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

func (d *decompressor) Close() error { d.d.Close(); return nil }
