package archive

import "github.com/walship/walship/internal/zstd"

// FrameSize is how much input each zstd frame of Compress's output holds,
// the last one excepted.
const FrameSize = frameSize

// A FrameEncoder compresses one chunk at a time into a zstd frame with its
// content checksum, as Compress does for each FrameSize chunk (the same
// encoder settings, and raw blocks for a chunk that samples show to be
// incompressible): concatenated, such frames read as one stream. walship
// tail builds its increments this way, so that it holds two frame-sized
// buffers rather than a whole increment twice over.
//
// Unlike Compress it keeps one encoder and one sample buffer of its own, so
// that once warm it allocates nothing: encoderPool's encoders go with every
// other garbage collection, and incompressible allocates its samples (64 KiB
// a frame, 3 MB/s of garbage for a tail under 48 MB/s of WAL). It is not
// safe for concurrent use.
type FrameEncoder struct {
	e      *zstd.Encoder
	sample []byte
}

// AppendFrame appends in, as one frame, to dst and returns the result.
func (f *FrameEncoder) AppendFrame(dst, in []byte) []byte {
	if f.e == nil {
		f.e = encoderPool.Get().(*zstd.Encoder) // kept, never put back
	}
	var raw bool
	raw, f.sample = incompressibleInto(f.e, in, f.sample)
	if raw {
		return rawFrame(dst, in)
	}
	return f.e.EncodeAll(in, dst)
}

// incompressibleInto reports whether zstd would save less than a tenth of
// in, judging by samples at its start and middle compressed with e into
// scratch, which it returns for the next call (incompressible's work, for
// callers that keep an encoder and a buffer).
func incompressibleInto(e *zstd.Encoder, in, scratch []byte) (bool, []byte) {
	if len(in) < 4*sampleSize {
		return false, scratch
	}
	for _, off := range []int{0, len(in) / 2} {
		scratch = e.EncodeAll(in[off:off+sampleSize], scratch[:0])
		if len(scratch) < sampleSize*9/10 {
			return false, scratch
		}
	}
	return true, scratch
}
