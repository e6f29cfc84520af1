package archive

import (
	"bytes"
	"context"
	"fmt"
	"io"
)

// PutWAL stores a WAL file (segment, .history, .backup or .partial) under
// wal/, compressed as c says. Like Put it never replaces a file: if the name
// is archived already, in any compression, it returns an error matching
// fs.ErrExist, and the caller decides whether the archived copy is the same.
func PutWAL(ctx context.Context, st Storage, name string, r io.Reader, c Compression) error {
	if _, _, err := StatWAL(ctx, st, name); err == nil {
		return fmt.Errorf("%s: %w", name, errExist)
	} else if !IsNotExist(err) {
		return err
	}
	if c == None {
		return st.Put(ctx, WALPath(name, ""), r)
	}
	zr := Compress(r)
	defer zr.Close()
	return st.Put(ctx, WALPath(name, c.Suffix()), zr)
}

// StatWAL finds the archived copy of a WAL file, trying every suffix, and
// returns its info and suffix. A file that is not archived returns an error
// matching fs.ErrNotExist.
func StatWAL(ctx context.Context, st Storage, name string) (FileInfo, string, error) {
	for _, suffix := range Suffixes {
		fi, err := st.Stat(ctx, WALPath(name, suffix))
		if err == nil {
			return fi, suffix, nil
		}
		if !IsNotExist(err) {
			return FileInfo{}, "", err
		}
	}
	return FileInfo{}, "", fmt.Errorf("%s: %w", name, errNotExist)
}

// OpenWAL opens the archived copy of a WAL file and returns a reader of its
// original bytes, decompressed, with the size stored for a raw file (-1 when
// compressed, where the size is known only at the end). A missing file
// returns an error matching fs.ErrNotExist; damaged compressed data reads as
// an error matching ErrCorrupt.
func OpenWAL(ctx context.Context, st Storage, name string) (io.ReadCloser, int64, error) {
	for _, suffix := range Suffixes {
		rc, err := st.Open(ctx, WALPath(name, suffix))
		if IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		if suffix == "" {
			fi, err := st.Stat(ctx, WALPath(name, suffix))
			if err != nil {
				rc.Close()
				return nil, 0, err
			}
			return rc, fi.Size, nil
		}
		// Read whole and decode in parallel: a segment is small enough,
		// and that halves the time a waiting standby spends on it.
		buf := bytes.NewBuffer(make([]byte, 0, 4<<20))
		_, err = buf.ReadFrom(io.LimitReader(rc, maxCompressed+1))
		rc.Close()
		if err != nil {
			return nil, 0, fmt.Errorf("read %s: %w", WALPath(name, suffix), err)
		}
		if buf.Len() > maxCompressed {
			return errorReader(fmt.Errorf("%w: %s is larger than any WAL file", ErrCorrupt, WALPath(name, suffix))), -1, nil
		}
		b, err := DecompressBytes(buf.Bytes())
		if err != nil {
			// Corruption shows when reading, as it does for a
			// stream, so callers have one place to look for it.
			return errorReader(err), -1, nil
		}
		return io.NopCloser(bytes.NewReader(b)), -1, nil
	}
	return nil, 0, fmt.Errorf("%s: %w", name, errNotExist)
}

// maxCompressed is the most a compressed WAL file can take: a 1 GiB segment
// of incompressible data, in raw blocks.
const maxCompressed = maxDecoded + maxDecoded/64 + 1<<20

// errorReader returns a reader whose every read returns err.
func errorReader(err error) io.ReadCloser { return io.NopCloser(&errOnly{err}) }

type errOnly struct{ err error }

func (e *errOnly) Read([]byte) (int, error) { return 0, e.err }
