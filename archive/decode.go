package archive

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/walship/walship/internal/zstd"
)

// maxFrameContent bounds one frame's content: the largest WAL segment
// PostgreSQL allows. A frame claiming more is damage, not data.
const maxFrameContent = 1 << 30

// maxBlock is the most a zstd block holds, compressed or not.
const maxBlock = 128 << 10

// decoderPool holds single-threaded decoders: a FrameReader finds its
// parallelism in decoding several frames at once.
var decoderPool = sync.Pool{New: func() any { return newDecoder(false) }}

// trustingPool holds decoders that skip the frames' own checksums, for a
// stream whose sum frame is known to be there (see FrameReader.trustSum).
var trustingPool = sync.Pool{New: func() any { return newDecoder(true) }}

func newDecoder(ignoreChecksum bool) *zstd.Decoder {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxFrameContent),
		zstd.IgnoreChecksum(ignoreChecksum))
	if err != nil {
		panic(err) // only invalid options fail, and these are constant
	}
	return d
}

// FrameReader reads what a zstd stream holds, every frame's checksum
// verified (or, from newSummedFrameReader, the whole content against the
// stream's sum frame alone). It reads the stream frame by frame: Read decodes one frame at a
// time, and WriteTo (which io.Copy uses) decodes the next frames on every
// CPU at once while it writes the earlier ones in order. walship's 1 MiB
// frames make that twice as fast as zstd's own stream decoder for a 16 MiB
// segment, with a few reused frame-sized buffers; a stream of one large
// frame (from the zstd tool, say) is decoded as that one frame.
//
// Damaged data of any kind reads as an error matching ErrCorrupt; an error
// of the underlying reader (a dropped connection) comes back as it is, since
// callers treat corruption as final and I/O errors as worth a retry.
type FrameReader struct {
	br     *bufio.Reader
	cur    *[]byte // the decoded frame being read
	pos    int
	err    error // sticky
	closed bool
	sums   contentSum
	format frameFormat
	// trustSum is set when the stream is known to end with a sum frame
	// (its last bytes were read first): the XXH64 of the whole content,
	// which the reader computes anyway, then stands for the frames' own
	// checksums, which are not computed. A stream that then ends without
	// its sum frame is corrupt.
	trustSum bool
	sawSum   bool // the sum frame was read and matched
	// needSum is set for an S2 stream: walship writes a sum chunk at the
	// end of every one, so a stream that ends without it was cut short
	// (at a chunk's end, which the chunks' CRCs cannot see).
	needSum bool
}

// NewFrameReader returns a FrameReader of the zstd stream r. A stream that
// ends with a sum frame (see WALChecksum) must hold what it says.
func NewFrameReader(r io.Reader) *FrameReader { return NewFrameReaderOf(Zstd, r) }

// NewFrameReaderOf is NewFrameReader for a stream in the format of c, Zstd
// or S2 (an S2 framing stream, whose chunks' CRCs are verified, and its
// sum chunk if it has one).
func NewFrameReaderOf(c Compression, r io.Reader) *FrameReader {
	return &FrameReader{br: bufio.NewReaderSize(r, 256<<10), sums: contentSum{h: xxhash.New()}, format: formatOf(c), needSum: c == S2}
}

// formatOf returns a frame splitter for a stream of c (Zstd or S2).
func formatOf(c Compression) frameFormat {
	if c == S2 {
		return &s2Format{}
	}
	return zstdFormat{}
}

// A frameFormat splits a stream into frames and decodes them.
type frameFormat interface {
	// read reads the next frame whole into a pooled buffer, or returns
	// the checksum of the sum frame, or io.EOF at the end.
	read(br *bufio.Reader) (*[]byte, *Checksum, error)
	// decode appends a frame's content to dst, checking the frame's own
	// checksum unless trustSum.
	decode(frame, dst []byte, trustSum bool) ([]byte, error)
}

// zstdFormat is zstd's frames (RFC 8878).
type zstdFormat struct{}

func (zstdFormat) read(br *bufio.Reader) (*[]byte, *Checksum, error) { return readFrame(br) }

func (zstdFormat) decode(frame, dst []byte, trustSum bool) ([]byte, error) {
	return decodeFrame(frame, dst, trustSum)
}

// newSummedFrameReader is NewFrameReader for a stream whose last bytes are
// known to be a sum frame: it checks the content against that sum alone.
// The sum covers all that a frame's checksum covers (the low 32 bits of
// the XXH64 of that frame's content) with 64 bits over the whole content,
// so every frame's content is still verified, once instead of twice.
func newSummedFrameReader(c Compression, r io.Reader) *FrameReader {
	f := NewFrameReaderOf(c, r)
	f.trustSum = true
	return f
}

// checkSum checks the content read against the stream's sum frame.
func (f *FrameReader) checkSum(want Checksum) error {
	if err := f.sums.check(want); err != nil {
		return err
	}
	f.sawSum = true
	return nil
}

// ended returns what the end of the stream means: io.EOF, or ErrCorrupt
// when the frames' checksums were skipped for a sum frame that is not
// there.
func (f *FrameReader) ended() error {
	if f.trustSum && !f.sawSum {
		return corrupt("the stream ends without the sum frame its last bytes held when it was opened")
	}
	if f.needSum && !f.sawSum {
		return corrupt("the S2 stream ends without its sum chunk: it was cut short")
	}
	return io.EOF
}

// readFrame reads the next frame of the stream.
func (f *FrameReader) readFrame() (*[]byte, *Checksum, error) {
	return f.format.read(f.br)
}

// atEnd returns io.EOF when the stream ends here, where a sum frame was,
// and ErrCorrupt when anything follows it.
func (f *FrameReader) atEnd() error {
	switch _, err := f.br.Peek(1); {
	case err == nil:
		return corrupt("data after the sum frame")
	case err != io.EOF:
		return err
	}
	return io.EOF
}

// contentSum hashes a stream's decoded content, to check its sum frame.
type contentSum struct {
	h *xxhash.Digest
	n int64
}

func (c *contentSum) add(b []byte) {
	c.h.Write(b)
	c.n += int64(len(b))
}

func (c *contentSum) check(want Checksum) error {
	if got := (Checksum{Sum: c.h.Sum64(), Size: c.n}); got != want {
		return corrupt("the content read (%d bytes, xxh64 %016x) is not what the file's sum frame says (%d bytes, xxh64 %016x): a frame is missing, repeated or out of place",
			got.Size, got.Sum, want.Size, want.Sum)
	}
	return nil
}

// Read reads decoded bytes.
func (f *FrameReader) Read(p []byte) (int, error) {
	for f.cur == nil || f.pos == len(*f.cur) {
		if f.err != nil {
			return 0, f.err
		}
		in, sum, err := f.readFrame()
		if err == io.EOF {
			err = f.ended()
		}
		if err != nil {
			f.err = err
			continue
		}
		if sum != nil {
			f.err = f.checkSum(*sum)
			if f.err == nil {
				f.err = f.atEnd()
			}
			continue
		}
		out := bufPool.Get().(*[]byte)
		*out, err = f.format.decode(*in, (*out)[:0], f.trustSum)
		bufPool.Put(in)
		f.release()
		if err != nil {
			bufPool.Put(out)
			f.err = err
			continue
		}
		f.sums.add(*out)
		f.cur, f.pos = out, 0
	}
	n := copy(p, (*f.cur)[f.pos:])
	f.pos += n
	return n, nil
}

// WriteTo writes the rest of the decoded stream to w, decoding frames in
// parallel.
func (f *FrameReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if f.cur != nil && f.pos < len(*f.cur) {
		n, err := w.Write((*f.cur)[f.pos:])
		total += int64(n)
		f.pos += n
		if err != nil {
			return total, err
		}
	}
	f.release()
	if f.err != nil {
		if f.err == io.EOF {
			return total, nil
		}
		return total, f.err
	}
	workers := min(runtime.GOMAXPROCS(0), 4)
	jobs := make(chan *frameJob, workers)
	stop := make(chan struct{})
	go func() {
		defer close(jobs)
		for {
			select {
			case <-stop: // the writer failed: read no further
				return
			default:
			}
			in, sum, err := f.readFrame()
			if err == io.EOF {
				err = f.ended() // the stream ended where no sum frame was
			}
			j := &frameJob{in: in, sum: sum, err: err, done: make(chan struct{})}
			if err != nil || sum != nil {
				close(j.done)
			} else {
				j.out = bufPool.Get().(*[]byte)
				go func() {
					*j.out, j.err = f.format.decode(*j.in, (*j.out)[:0], f.trustSum)
					close(j.done)
				}()
			}
			select {
			case jobs <- j:
			case <-stop:
				<-j.done
				j.free()
				return
			}
			if err != nil {
				return
			}
			if sum != nil {
				// The sum frame ends the stream; the writer checks it
				// and then finds out whether anything follows.
				j := &frameJob{err: f.atEnd(), done: make(chan struct{})}
				close(j.done)
				select {
				case jobs <- j:
				case <-stop:
				}
				return
			}
		}
	}()
	var err error
	for j := range jobs {
		<-j.done
		if err == nil {
			err = j.err
			switch {
			case err == nil && j.sum != nil:
				err = f.checkSum(*j.sum)
			case err == nil:
				f.sums.add(*j.out)
				var n int
				n, err = w.Write(*j.out)
				total += int64(n)
			}
			if err != nil {
				close(stop)
			}
		}
		j.free()
	}
	if err == io.EOF {
		f.err = io.EOF
		return total, nil
	}
	f.err = err
	if err == nil {
		f.err = errors.New("archive: FrameReader: read after an error") // cannot happen: the producer ends with an error
	}
	return total, err
}

// frameJob is one frame decoded by WriteTo.
type frameJob struct {
	in, out *[]byte
	sum     *Checksum // the sum frame's, for a job of the sum frame
	err     error
	done    chan struct{} // closed when out and err are set
}

// free returns the job's buffers to the pool.
func (j *frameJob) free() {
	for _, b := range []*[]byte{j.in, j.out} {
		if b != nil {
			bufPool.Put(b)
		}
	}
	j.in, j.out = nil, nil
}

// release returns the current frame's buffer to the pool.
func (f *FrameReader) release() {
	if f.cur != nil {
		bufPool.Put(f.cur)
		f.cur, f.pos = nil, 0
	}
}

// Close releases the buffers. It does not close the underlying reader.
func (f *FrameReader) Close() error {
	if !f.closed {
		f.closed = true
		f.release()
		if f.err == nil {
			f.err = errors.New("archive: read of a closed FrameReader")
		}
	}
	return nil
}

// readFrame reads the next frame, whole, into a pooled buffer, skipping
// skippable frames other than a sum frame, whose checksum it returns
// instead of a buffer. It finds the frame's end by its header and block
// headers (RFC 8878), without decoding. At the end of the stream it
// returns io.EOF.
func readFrame(br *bufio.Reader) (*[]byte, *Checksum, error) {
	for {
		peek, err := br.Peek(zstd.HeaderMaxSize)
		if len(peek) == 0 {
			if err == io.EOF {
				return nil, nil, io.EOF
			}
			return nil, nil, err
		}
		if err != nil && err != io.EOF {
			return nil, nil, err
		}
		var h zstd.Header
		if err := h.Decode(peek); err != nil {
			return nil, nil, corrupt("frame header: %w", err)
		}
		if h.Skippable {
			if _, err := br.Discard(h.HeaderSize); err != nil {
				return nil, nil, truncated(err)
			}
			if h.SkippableID == sumMagic&0xf && h.SkippableSize == sumPayload {
				p := make([]byte, sumPayload)
				if _, err := io.ReadFull(br, p); err != nil {
					return nil, nil, truncated(err)
				}
				if c, ok := parseSumPayload(p); ok {
					return nil, &c, nil
				}
				continue
			}
			if _, err := io.CopyN(io.Discard, br, int64(h.SkippableSize)); err != nil {
				return nil, nil, truncated(err)
			}
			continue
		}
		if h.HasFCS && h.FrameContentSize > maxFrameContent {
			return nil, nil, corrupt("a frame of %d bytes", h.FrameContentSize)
		}
		buf := bufPool.Get().(*[]byte)
		b, err := readBlocks(br, (*buf)[:0], h)
		*buf = b
		if err != nil {
			bufPool.Put(buf)
			return nil, nil, err
		}
		return buf, nil, nil
	}
}

// readBlocks appends the frame whose header h describes, header to
// checksum, to b.
func readBlocks(br *bufio.Reader, b []byte, h zstd.Header) ([]byte, error) {
	b, err := readN(br, b, h.HeaderSize)
	if err != nil {
		return b, err
	}
	blocks := 0
	for last := false; !last; {
		start := len(b)
		if b, err = readN(br, b, 3); err != nil {
			return b, err
		}
		bh := int(b[start]) | int(b[start+1])<<8 | int(b[start+2])<<16
		last = bh&1 == 1
		size := bh >> 3
		switch bh >> 1 & 3 {
		case 1: // RLE: one byte, repeated size times
			size = 1
		case 3:
			return b, corrupt("reserved block type")
		}
		if size > maxBlock {
			return b, corrupt("a block of %d bytes", size)
		}
		if b, err = readN(br, b, size); err != nil {
			return b, err
		}
		blocks++
	}
	// A block holds at most 128 KiB, so a damaged header cannot make the
	// decoder allocate more than the blocks could fill.
	if h.HasFCS && h.FrameContentSize > uint64(blocks)*maxBlock {
		return b, corrupt("%d blocks cannot hold the %d bytes the frame header says", blocks, h.FrameContentSize)
	}
	if h.HasCheckSum {
		return readN(br, b, 4)
	}
	return b, nil
}

// readN appends n bytes of br to b. A stream that ends first is corrupt.
func readN(br *bufio.Reader, b []byte, n int) ([]byte, error) {
	l := len(b)
	b = slices.Grow(b, n)[:l+n]
	if _, err := io.ReadFull(br, b[l:]); err != nil {
		return b[:l], truncated(err)
	}
	return b, nil
}

// decodeFrame appends the content of one whole frame to dst, checking the
// frame's checksum unless trustSum says the stream's sum frame stands for
// it.
func decodeFrame(frame, dst []byte, trustSum bool) ([]byte, error) {
	pool := &decoderPool
	if trustSum {
		pool = &trustingPool
	}
	d := pool.Get().(*zstd.Decoder)
	defer pool.Put(d)
	out, err := d.DecodeAll(frame, dst)
	if err != nil {
		return dst, corrupt("%w", err)
	}
	return out, nil
}

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %w", ErrCorrupt, fmt.Errorf(format, a...))
}

// truncated turns the end of the stream inside a frame into corruption, and
// leaves other read errors as they are.
func truncated(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return corrupt("the stream ends inside a frame")
	}
	return err
}
