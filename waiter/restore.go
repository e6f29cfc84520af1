package waiter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// ErrNotFound says the file is not in the archive: exit 1 for PostgreSQL.
var ErrNotFound = errors.New("not found in the archive")

// ErrBadWAL says the archive holds a file that must not be applied: corrupt,
// truncated, of another cluster, or not the segment its name says. Recovery
// must stop (an exit code above 125) rather than end or go on.
var ErrBadWAL = errors.New("archive holds bad WAL")

// errNotReady says a raw file is still being copied into the archive by a
// tool without atomic renames (plain cp): it is treated as absent for now.
var errNotReady = errors.New("archived file is not complete yet")

// Expect is what a restored segment must match. Zero fields are not checked.
type Expect struct {
	SystemID    uint64 // the standby's, from pg_control, or the archive's identity
	SegmentSize int64
}

// Restore copies the archived file name to dest after verifying it, and
// returns nil only once dest holds the whole, verified file. A segment must
// decompress without checksum error to exactly its segment size and carry
// the page header of the named segment of the expected cluster. Restore
// writes a temporary file beside dest and renames it, so dest never holds a
// partial file.
//
// A missing file is an error matching ErrNotFound; a bad file ErrBadWAL; any
// other error (the archive unreachable, say) is worth a retry.
func Restore(ctx context.Context, st archive.Storage, name, dest string, exp Expect) error {
	n, err := wal.ParseName(name)
	if err != nil {
		return err
	}
	err = restore(ctx, st, n, dest, exp)
	if errors.Is(err, errNotReady) {
		return fmt.Errorf("%s: %w (%w)", name, ErrNotFound, err)
	}
	return err
}

func restore(ctx context.Context, st archive.Storage, n wal.Name, dest string, exp Expect) error {
	name := n.String()
	rc, rawSize, err := archive.OpenWAL(ctx, st, name)
	if archive.IsNotExist(err) {
		return fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer rc.Close()

	isSeg := n.Kind == wal.Segment || n.Kind == wal.Partial
	var want int64 = -1
	var prefix []byte // read to check the page header
	if isSeg {
		h, err := readHeader(rc, n, rawSize, exp)
		if err != nil {
			return err
		}
		want = int64(h.SegmentSize)
		if rawSize >= 0 && rawSize < want {
			return fmt.Errorf("%s: %w: %d of %d bytes", name, errNotReady, rawSize, want)
		}
		if rawSize > want {
			return fmt.Errorf("%w: %s has %d bytes, more than the segment size %d", ErrBadWAL, name, rawSize, want)
		}
		prefix = h.raw
	}

	tmp, err := os.CreateTemp(filepath.Dir(dest), ".walship-restore-*")
	if err != nil {
		return fmt.Errorf("restore %s: %w", name, err)
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	_, err = tmp.Write(prefix)
	got := int64(len(prefix))
	if err == nil {
		var n int64
		n, err = copyBuffer(ctx, tmp, rc)
		got += n
	}
	switch {
	case errors.Is(err, archive.ErrCorrupt):
		return fmt.Errorf("%w: %s: %w", ErrBadWAL, name, err)
	case err != nil:
		return fmt.Errorf("restore %s: %w", name, err)
	case isSeg && got != want && rawSize >= 0:
		// A raw file that changed size while read is still being copied.
		return fmt.Errorf("%s: %w: read %d of %d bytes", name, errNotReady, got, want)
	case isSeg && got != want:
		return fmt.Errorf("%w: %s decompresses to %d bytes, the segment size is %d", ErrBadWAL, name, got, want)
	}
	if n.Kind == wal.History {
		if err := checkHistory(tmp); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrBadWAL, name, err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("restore %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return fmt.Errorf("restore %s: %w", name, err)
	}
	tmp = nil
	return nil
}

type header struct {
	wal.LongHeader
	raw []byte // the bytes read to parse it
}

// readHeader reads and checks the long page header at the start of a
// segment.
func readHeader(r io.Reader, n wal.Name, rawSize int64, exp Expect) (header, error) {
	buf := make([]byte, wal.LongHeaderSize)
	k, err := io.ReadFull(r, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		if errors.Is(err, archive.ErrCorrupt) {
			return header{}, fmt.Errorf("%w: %s: %w", ErrBadWAL, n, err)
		}
		return header{}, fmt.Errorf("read %s: %w", n, err)
	}
	buf = buf[:k]
	if rawSize >= 0 && (k < wal.LongHeaderSize || bytes.Count(buf, []byte{0}) == len(buf)) {
		// A raw copy in progress: empty, or preallocated and not written yet.
		return header{}, fmt.Errorf("%s: %w: no page header yet", n, errNotReady)
	}
	h, err := wal.ParseLongHeader(buf)
	if err != nil {
		return header{}, fmt.Errorf("%w: %s: %w", ErrBadWAL, n, err)
	}
	if err := h.Check(n, exp.SystemID, exp.SegmentSize); err != nil {
		return header{}, fmt.Errorf("%w: %w", ErrBadWAL, err)
	}
	return header{LongHeader: h, raw: buf}, nil
}

func checkHistory(f *os.File) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return err
	}
	_, err = wal.ParseHistory(b)
	return err
}

// copyBuffer copies r to w, checking ctx between chunks. A reader that can
// write itself does (io.WriterTo: a decompressing reader decodes frames in
// parallel, an SFTP file reads ahead); a local file is copied in 1 MiB
// chunks, since its WriteTo falls back to 32 KiB ones between two file
// systems (an NFS archive, a local pg_wal).
func copyBuffer(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if _, isFile := r.(*os.File); !isFile {
		if wt, ok := r.(io.WriterTo); ok {
			n, err := wt.WriteTo(w)
			if err == nil {
				err = ctx.Err()
			}
			return n, err
		}
	}
	buf := make([]byte, 1<<20)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// ControlSystemID reads the database system identifier from
// global/pg_control in dataDir: the first field of ControlFileData, in
// every PostgreSQL version.
func ControlSystemID(dataDir string) (uint64, error) {
	f, err := os.Open(filepath.Join(dataDir, "global", "pg_control"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var b [8]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return 0, fmt.Errorf("read pg_control: %w", err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}
