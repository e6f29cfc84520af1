package archive

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

var (
	errNotExist = fs.ErrNotExist
	errExist    = fs.ErrExist
)

// Compression says how files are stored in the archive.
type Compression int

// The compressions walship writes. Readers accept both, whatever a writer
// was told, so an archive filled by plain cp keeps working.
const (
	Zstd Compression = iota // zstd frames with their content checksum, suffix ".zst"
	None                    // the file as it is, no suffix
)

// ParseCompression parses a --compress value.
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "zstd", "zst", "":
		return Zstd, nil
	case "none", "off":
		return None, nil
	}
	return 0, fmt.Errorf("unknown compression %q: use zstd or none", s)
}

// String returns the --compress value of c.
func (c Compression) String() string {
	if c == None {
		return "none"
	}
	return "zstd"
}

// Suffix returns the file name suffix of files stored with c.
func (c Compression) Suffix() string {
	if c == None {
		return ""
	}
	return ".zst"
}

// Suffixes lists the suffixes a reader tries, most likely first.
var Suffixes = []string{".zst", ""}

// ErrCorrupt is returned when an archived file fails its checksum or cannot
// be decompressed.
var ErrCorrupt = errors.New("archived file is corrupt")

// frameSize is how much input goes into one zstd frame. Frames are
// compressed in parallel and concatenated, which every zstd decoder reads as
// one stream; each frame carries its own checksum.
const frameSize = 4 << 20

// encoderPool holds single-threaded encoders: parallelism comes from
// compressing several frames at once, which beats zstd's own block
// pipelining for 16 MiB inputs.
var encoderPool = sync.Pool{New: func() any {
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderCRC(true),
		zstd.WithEncoderConcurrency(1),
		zstd.WithLowerEncoderMem(false))
	if err != nil {
		panic(err) // only invalid options fail, and these are constant
	}
	return e
}}

// Compress returns a reader of the zstd-compressed bytes of r. Reading it
// returns r's read error, if any. Close stops the work early.
func Compress(r io.Reader) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(compressFrames(pw, r)) }()
	return pr
}

// compressFrames reads r in frameSize chunks, compresses up to GOMAXPROCS
// chunks at a time and writes the frames to w in order.
func compressFrames(w io.Writer, r io.Reader) error {
	workers := min(runtime.GOMAXPROCS(0), 4)
	type job struct {
		in   []byte
		out  []byte
		done chan struct{}
	}
	jobs := make(chan *job, workers)
	errc := make(chan error, 1)
	go func() {
		defer close(jobs)
		for {
			in := make([]byte, frameSize)
			n, err := io.ReadFull(r, in)
			if n > 0 {
				j := &job{in: in[:n], done: make(chan struct{})}
				go func() {
					e := encoderPool.Get().(*zstd.Encoder)
					j.out = e.EncodeAll(j.in, make([]byte, 0, len(j.in)/2))
					encoderPool.Put(e)
					close(j.done)
				}()
				jobs <- j
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
	wrote := false
	for j := range jobs {
		<-j.done
		if werr == nil {
			_, werr = w.Write(j.out)
			wrote = true
		}
	}
	if err := <-errc; err != nil {
		return err
	}
	if werr == nil && !wrote {
		// An empty input still needs one (empty) frame to be a valid file.
		e := encoderPool.Get().(*zstd.Encoder)
		_, werr = w.Write(e.EncodeAll(nil, nil))
		encoderPool.Put(e)
	}
	return werr
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
