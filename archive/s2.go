package archive

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"slices"
	"sync"

	"github.com/walship/walship/internal/s2"
)

// A WAL segment stored with --compress s2 is a stream of the S2 framing
// format (the Snappy framing format with S2 blocks; s2d and s2.Reader
// read it): the stream identifier chunk, then a chunk for each 1 MiB of
// the segment, compressed (type 0x00) or, where S2 would save little,
// stored (0x01), each with the masked CRC-32C of its content, then the sum
// chunk: a skippable chunk (type s2SumChunk, which every reader of the
// format skips) with the payload of zstd's sum frame (sumTag, the XXH64
// and the size of the whole segment), so that a re-push compares
// checksums and a reader sees a chunk dropped, repeated or moved, as with
// zstd.
const (
	s2Magic       = "\xff\x06\x00\x00S2sTwO" // the stream identifier chunk
	s2Compressed  = 0x00
	s2Stored      = 0x01
	s2SumChunk    = 0xb1 // in 0x80-0xfd, the skippable chunk types
	s2Padding     = 0xfe
	s2Identifier  = 0xff
	s2MaxBlock    = 4 << 20 // the most one chunk may hold, decoded (the format's limit)
	s2SumSize     = 4 + sumPayload
	s2ChunkHeader = 8 // type, 3 bytes of length, the CRC
)

// s2FrameMax is the most one chunk of frameSize bytes of input takes.
var s2FrameMax = s2ChunkHeader + s2.MaxEncodedLen(frameSize)

// s2Codec is the S2 framing format, for compressFrames.
type s2Codec struct{}

func (s2Codec) start() []byte { return []byte(s2Magic) }

// An empty input is the stream identifier alone.
func (s2Codec) empty() []byte { return nil }

func (s2Codec) sum(c Checksum) []byte {
	b := []byte{s2SumChunk, sumPayload, 0, 0}
	return appendSumPayload(b, c)
}

// frame returns in as one chunk: compressed, or in two pieces (header and
// in itself) where a sample or the result shows S2 saves less than a
// sixteenth of it.
func (s2Codec) frame(out *[]byte, in []byte, _ bool) [][]byte {
	crc := s2.ChunkCRC(in)
	if !s2Incompressible(in) {
		b := slices.Grow((*out)[:0], s2FrameMax)[:s2FrameMax]
		enc := s2.Encode(b[s2ChunkHeader:], in)
		if len(enc) < len(in)-len(in)/16 {
			putS2Header(b, s2Compressed, len(enc), crc)
			*out = b[:s2ChunkHeader+len(enc)]
			return nil
		}
	}
	hdr := (*out)[:s2ChunkHeader]
	putS2Header(hdr, s2Stored, len(in), crc)
	return [][]byte{hdr, in}
}

// putS2Header writes a data chunk's header for n bytes of data into b.
func putS2Header(b []byte, typ byte, n int, crc uint32) {
	n += 4 // the length counts the CRC
	b[0], b[1], b[2], b[3] = typ, byte(n), byte(n>>8), byte(n>>16)
	binary.LittleEndian.PutUint32(b[4:], crc)
}

// s2SamplePool holds s2Incompressible's output buffers.
var s2SamplePool = sync.Pool{New: func() any { b := make([]byte, s2.MaxEncodedLen(sampleSize)); return &b }}

// s2Incompressible reports whether S2 would save less than a tenth of in,
// judging by samples at its start and middle: a chunk of random or
// already compressed data is then stored without encoding it whole.
func s2Incompressible(in []byte) bool {
	if len(in) < 4*sampleSize {
		return false
	}
	scratch := s2SamplePool.Get().(*[]byte)
	defer s2SamplePool.Put(scratch)
	n := len(s2.Encode(*scratch, in[:sampleSize]))
	mid := len(in) / 2
	n += len(s2.Encode(*scratch, in[mid:mid+sampleSize]))
	return n > 2*sampleSize*9/10
}

// s2Format reads S2 framing streams for a FrameReader.
type s2Format struct {
	started bool // the stream identifier was read
}

// read reads the next data chunk, whole (header included), into a pooled
// buffer, checking the stream identifier first and skipping skippable
// chunks other than the sum chunk, whose checksum it returns instead of a
// buffer. At the end of the stream it returns io.EOF.
func (f *s2Format) read(br *bufio.Reader) (*[]byte, *Checksum, error) {
	for {
		hdr, err := br.Peek(4)
		if len(hdr) == 0 && err == io.EOF {
			if !f.started {
				return nil, nil, corrupt("an empty file, not an S2 stream")
			}
			return nil, nil, io.EOF
		}
		if err != nil {
			return nil, nil, truncated(err)
		}
		typ, n := hdr[0], int(hdr[1])|int(hdr[2])<<8|int(hdr[3])<<16
		if !f.started && typ != s2Identifier {
			return nil, nil, corrupt("not an S2 stream (its first chunk is of type %#02x)", typ)
		}
		switch {
		case typ == s2Identifier:
			b := make([]byte, len(s2Magic))
			if _, err := io.ReadFull(br, b); err != nil {
				return nil, nil, truncated(err)
			}
			if string(b) != s2Magic {
				return nil, nil, corrupt("a stream identifier chunk that is not S2's: %q", b)
			}
			f.started = true
		case typ == s2SumChunk && n == sumPayload:
			p := make([]byte, s2SumSize)
			if _, err := io.ReadFull(br, p); err != nil {
				return nil, nil, truncated(err)
			}
			if c, ok := parseSumPayload(p[4:]); ok {
				return nil, &c, nil
			}
		case typ >= 0x80: // skippable, padding included
			if _, err := br.Discard(4); err != nil {
				return nil, nil, truncated(err)
			}
			if _, err := br.Discard(n); err != nil {
				return nil, nil, truncated(err)
			}
		case typ == s2Compressed || typ == s2Stored:
			if n < 4 || n-4 > s2.MaxEncodedLen(s2MaxBlock) || (typ == s2Stored && n-4 > s2MaxBlock) {
				return nil, nil, corrupt("a chunk of %d bytes", n)
			}
			buf := bufPool.Get().(*[]byte)
			b, err := readN(br, (*buf)[:0], 4+n)
			*buf = b
			if err != nil {
				bufPool.Put(buf)
				return nil, nil, err
			}
			return buf, nil, nil
		default:
			return nil, nil, corrupt("a chunk of reserved type %#02x", typ)
		}
	}
}

// decode appends the content of one data chunk to dst, checking its CRC
// unless trustSum says the stream's sum chunk stands for it.
func (*s2Format) decode(chunk, dst []byte, trustSum bool) ([]byte, error) {
	data := chunk[s2ChunkHeader:]
	l := len(dst)
	if chunk[0] == s2Stored {
		dst = append(dst, data...)
	} else {
		n, err := s2.DecodedLen(data)
		if err != nil {
			return dst, corrupt("%w", err)
		}
		if n > s2MaxBlock {
			return dst, corrupt("a chunk of %d bytes decoded", n)
		}
		dst = slices.Grow(dst, n)[:l+n]
		if _, err := s2.Decode(dst[l:], data); err != nil {
			return dst[:l], corrupt("%w", err)
		}
	}
	if !trustSum && s2.ChunkCRC(dst[l:]) != binary.LittleEndian.Uint32(chunk[4:]) {
		return dst[:l], corrupt("a chunk's CRC-32C does not match its content")
	}
	return dst, nil
}

// parseS2Sum returns the checksum of a whole sum chunk.
func parseS2Sum(b []byte) (Checksum, bool) {
	if len(b) != s2SumSize || !bytes.Equal(b[:4], []byte{s2SumChunk, sumPayload, 0, 0}) {
		return Checksum{}, false
	}
	return parseSumPayload(b[4:])
}
