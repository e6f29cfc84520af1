package archive

import (
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
		fr := NewFrameReader(rc)
		return readCloser{FrameReader: fr, close: func() error { fr.Close(); return rc.Close() }}, -1, nil
	}
	return nil, 0, fmt.Errorf("%s: %w", name, errNotExist)
}

// readCloser reads from a FrameReader and closes it and its source. It
// passes WriteTo on, so io.Copy decodes in parallel.
type readCloser struct {
	*FrameReader
	close func() error
}

func (r readCloser) Close() error { return r.close() }
