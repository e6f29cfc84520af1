package shipper

import (
	"errors"
	"fmt"
	"io"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// errRecycled says the segment file was seen to hold another segment once
// an increment was read from it.
var errRecycled = errors.New("the file was recycled")

// tailReadError is a read of the segment file that failed, not the archive.
type tailReadError struct{ err error }

func (e *tailReadError) Error() string { return e.err.Error() }
func (e *tailReadError) Unwrap() error { return e.err }

// incrementReader reads bytes [start, end) of a segment file the way an
// increment stores them: as zstd frames of archive.FrameSize bytes of WAL
// each (archive.FrameEncoder), or raw, one chunk at a time, so that an
// increment of maxIncrement bytes costs two chunk-sized buffers rather than
// the increment twice over (raw and compressed).
//
// The bytes go to the archive as they are read, so the check that the file
// still holds the segment, which must come after the last byte is read
// (see Tail.read), comes at the end: instead of io.EOF, Read then returns
// errRecycled, which aborts the Put (archive.Storage.Put stores nothing when
// its reader fails). Seeking back to the start reads the file again, which
// lets archive.Retry retry a Put that failed half-way.
type incrementReader struct {
	f          SegmentFile
	name       string
	start, end int64
	compress   bool
	// holds reports whether the file still holds the segment, reading its
	// first page again.
	holds func() (bool, error)
	// in, out and enc are the chunk buffers and the encoder, kept by the
	// Tail between increments.
	in, out *[]byte
	enc     *archive.FrameEncoder

	off     int64  // next byte of the file to read
	pending []byte // output not returned yet
	n       int64  // bytes returned since the start
	err     error  // sticky: io.EOF, errRecycled or a read error
}

func (r *incrementReader) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.off >= r.end {
			r.err = io.EOF
			ok, err := r.holds()
			if err != nil {
				r.err = &tailReadError{fmt.Errorf("read %s: %w", r.name, err)}
			} else if !ok {
				r.err = errRecycled
			}
			return 0, r.err
		}
		n := min(r.end-r.off, archive.FrameSize)
		if int64(cap(*r.in)) < n {
			*r.in = make([]byte, archive.FrameSize)
		}
		in := (*r.in)[:n]
		if _, err := r.f.ReadAt(in, r.off); err != nil {
			r.err = &tailReadError{fmt.Errorf("read %s at %d: %w", r.name, r.off, err)}
			return 0, r.err
		}
		r.off += n
		if r.compress {
			if cap(*r.out) == 0 {
				// A frame of raw blocks: the most a frame takes.
				*r.out = make([]byte, 0, archive.FrameSize+archive.FrameSize/64+64)
			}
			*r.out = r.enc.AppendFrame((*r.out)[:0], in)
			r.pending = *r.out
		} else {
			r.pending = in
		}
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	r.n += int64(n)
	return n, nil
}

// Seek answers where the reader is (offset 0 from io.SeekCurrent) and goes
// back to the start (offset 0 from io.SeekStart), as archive.Retry asks;
// nothing else.
func (r *incrementReader) Seek(offset int64, whence int) (int64, error) {
	switch {
	case offset == 0 && whence == io.SeekCurrent:
		return r.n, nil
	case offset == 0 && whence == io.SeekStart:
		r.off, r.pending, r.n, r.err = r.start, nil, 0, nil
		return 0, nil
	}
	return 0, errors.New("an increment reader seeks only back to its start")
}

// segmentHolds reports whether the first page of f names segment segno of
// size bytes.
func segmentHolds(f SegmentFile, segno wal.SegNo, size int64) (wal.LongHeader, bool, error) {
	var hb [wal.LongHeaderSize]byte
	if _, err := f.ReadAt(hb[:], 0); err != nil {
		return wal.LongHeader{}, false, err
	}
	h, err := wal.ParseLongHeader(hb[:])
	ok := err == nil && h.PageAddr == segno.Start(size) && int64(h.SegmentSize) == size
	return h, ok, nil
}
