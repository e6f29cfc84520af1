package archive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A zstd WAL file that walship writes ends with a sum frame: a zstd
// skippable frame (RFC 8878 §3.1.2, which every zstd decoder skips)
// holding the XXH64 and the size of the whole original file, as a raw
// file's checksum file does. Each data frame carries its own checksum;
// the sum frame adds what those cannot see (a frame dropped, repeated or
// moved) and lets a re-push compare checksums instead of decompressing
// the archived copy: its last 32 bytes are all a re-push reads of it, on
// a backend that reads at an offset.
const (
	sumMagic     = 0x184D2A57 // one of the 16 skippable magic numbers
	sumPayload   = 24         // sumTag, XXH64, size
	sumFrameSize = 8 + sumPayload
)

// sumTag starts a sum frame's payload, so another tool's skippable frame
// with the same magic number is not taken for one.
var sumTag = [8]byte{'w', 'a', 'l', 's', 'h', 'i', 'p', 1}

// ErrNoChecksum is returned by WALChecksum for an archived file that
// records no checksum of its content: a raw file without its checksum
// file, a file at a pg_standby archive's root, a zstd file written by an
// older walship or another tool.
var ErrNoChecksum = errors.New("the archived copy records no checksum")

// appendSumFrame appends the sum frame of c to b.
func appendSumFrame(b []byte, c Checksum) []byte {
	b = binary.LittleEndian.AppendUint32(b, sumMagic)
	b = binary.LittleEndian.AppendUint32(b, sumPayload)
	return appendSumPayload(b, c)
}

// appendSumPayload appends the payload of a sum frame (or an S2 sum chunk)
// of c to b.
func appendSumPayload(b []byte, c Checksum) []byte {
	b = append(b, sumTag[:]...)
	b = binary.LittleEndian.AppendUint64(b, c.Sum)
	return binary.LittleEndian.AppendUint64(b, uint64(c.Size))
}

// parseSumPayload returns the checksum a skippable frame's payload holds,
// and false when the frame is not a sum frame.
func parseSumPayload(p []byte) (Checksum, bool) {
	if len(p) != sumPayload || !bytes.Equal(p[:8], sumTag[:]) {
		return Checksum{}, false
	}
	size := binary.LittleEndian.Uint64(p[16:])
	if size > 1<<62 {
		return Checksum{}, false
	}
	return Checksum{Sum: binary.LittleEndian.Uint64(p[8:]), Size: int64(size)}, true
}

// parseSumFrame returns the checksum of a whole sum frame.
func parseSumFrame(b []byte) (Checksum, bool) {
	if len(b) != sumFrameSize || binary.LittleEndian.Uint32(b) != sumMagic || binary.LittleEndian.Uint32(b[4:]) != sumPayload {
		return Checksum{}, false
	}
	return parseSumPayload(b[8:])
}

// WALChecksum returns the checksum the archive records of the original
// content of the WAL file name: a zstd file's sum frame, a raw file's
// checksum file. It reads neither file whole when it can help it: of a
// zstd file on a backend whose files read at an offset (a directory,
// SFTP) only the last 32 bytes; elsewhere the compressed bytes, walked
// frame by frame without decoding them. An archived copy that records no
// checksum returns an error matching ErrNoChecksum, and the caller
// compares the content itself; a missing file matches fs.ErrNotExist.
func WALChecksum(ctx context.Context, st Storage, name string) (Checksum, error) {
	for _, path := range walPaths(name) {
		rc, err := st.Open(ctx, path)
		if IsNotExist(err) {
			continue
		}
		if err != nil {
			return Checksum{}, err
		}
		defer rc.Close()
		switch {
		case CompressionOf(path) != None:
			return framedChecksum(ctx, st, path, rc, CompressionOf(path))
		case path == WALPath(name, ""):
			c, err := readChecksum(ctx, st, name)
			if IsNotExist(err) {
				return Checksum{}, fmt.Errorf("%s: %w (a raw file without its checksum file)", name, ErrNoChecksum)
			}
			return c, err
		default:
			return Checksum{}, fmt.Errorf("%s: %w (a file at the archive's root)", name, ErrNoChecksum)
		}
	}
	return Checksum{}, fmt.Errorf("%s: %w", name, errNotExist)
}

// sumFrameAt reads the last bytes of a file of c (Zstd or S2) of size
// bytes and returns the checksum of the sum frame (S2: chunk) they hold,
// or false when they are not one.
func sumFrameAt(ra io.ReaderAt, size int64, c Compression) (Checksum, bool, error) {
	n, parse := sumSizeOf(c), parseSumFrame
	if c == S2 {
		parse = parseS2Sum
	}
	if size < n {
		return Checksum{}, false, nil
	}
	b := make([]byte, n)
	if _, err := ra.ReadAt(b, size-n); err != nil {
		return Checksum{}, false, err
	}
	sum, ok := parse(b)
	return sum, ok, nil
}

// sumSizeOf returns the size of the sum frame (S2: chunk) that ends a
// walship file of c.
func sumSizeOf(c Compression) int64 {
	if c == S2 {
		return s2SumSize
	}
	return sumFrameSize
}

// framedChecksum returns the checksum in the sum frame that ends the file
// path of c (Zstd or S2), open as rc.
func framedChecksum(ctx context.Context, st Storage, path string, rc io.Reader, c Compression) (Checksum, error) {
	if ra, ok := rc.(io.ReaderAt); ok {
		fi, err := st.Stat(ctx, path)
		if err != nil {
			return Checksum{}, err
		}
		if fi.Size < sumSizeOf(c) {
			return Checksum{}, fmt.Errorf("%w: %s holds %d bytes, too few for a %s file", ErrCorrupt, path, fi.Size, c)
		}
		sum, ok, err := sumFrameAt(ra, fi.Size, c)
		switch {
		case err != nil:
			return Checksum{}, err
		case !ok:
			return Checksum{}, fmt.Errorf("%s: %w (no sum frame at its end)", path, ErrNoChecksum)
		}
		return sum, nil
	}
	// Walk the frames: the sum frame is the last one.
	br := bufio.NewReaderSize(rc, 256<<10)
	format := formatOf(c)
	for {
		buf, sum, err := format.read(br)
		if buf != nil {
			bufPool.Put(buf)
		}
		switch {
		case err == io.EOF:
			return Checksum{}, fmt.Errorf("%s: %w (no sum frame)", path, ErrNoChecksum)
		case err != nil:
			return Checksum{}, err
		case sum != nil:
			switch _, err := br.Peek(1); {
			case err == nil:
				return Checksum{}, fmt.Errorf("%w: %s: data after its sum frame", ErrCorrupt, path)
			case err != io.EOF:
				return Checksum{}, err
			}
			return *sum, nil
		}
	}
}
