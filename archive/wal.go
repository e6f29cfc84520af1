package archive

import (
	"context"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/walship/walship/wal"
)

// ChecksumSuffix ends the name of the checksum file that walship stores
// beside every raw (uncompressed) WAL file it archives:
// wal/<name>.xxh64 holds "xxh64 <16 hex digits> <size>\n" of wal/<name>.
// A zstd file carries its own content checksums (see WALChecksum); a raw one would otherwise
// carry none, and a bit flipped in a raw segment is, to PostgreSQL, the end
// of WAL, which promotes a waiting standby. The checksum file is made
// durable no earlier than the file it describes is read whole (see putRaw),
// so a raw file without one is either a file another tool copied in (plain
// cp, pg_standby's archives) or a push that died in between; readers then
// verify the WAL records instead. A checksum file is read only beside its
// file.
const ChecksumSuffix = ".xxh64"

// ChecksumPath returns the archive name of the checksum file of the raw WAL
// file name.
func ChecksumPath(name string) string { return WALPath(name, ChecksumSuffix) }

// PutWAL stores a WAL file (segment, .history, .backup or .partial) under
// wal/, compressed as c says; a raw file gets its checksum file. Like Put it
// never replaces a file: if the name is archived already, in any
// compression, it returns an error matching fs.ErrExist, and the caller
// decides whether the archived copy is the same.
func PutWAL(ctx context.Context, st Storage, name string, r io.Reader, c Compression) error {
	return PutWALDigest(ctx, st, name, r, c, "")
}

// DigestPutter is implemented by storages that can record, with a file,
// a digest of the content it was made from (the encryption layer, whose
// writers cannot read back what they stored).
type DigestPutter interface {
	// PutDigest is Put, recording digest with the file.
	PutDigest(ctx context.Context, name string, r io.Reader, digest string) error
}

// PutWALDigest is PutWAL, recording digest with the file when st is a
// DigestPutter.
func PutWALDigest(ctx context.Context, st Storage, name string, r io.Reader, c Compression, digest string) error {
	if _, _, err := StatWAL(ctx, st, name); err == nil {
		return fmt.Errorf("%s: %w", name, errExist)
	} else if !IsNotExist(err) {
		return err
	}
	return PutNewWAL(ctx, st, name, r, c, digest)
}

// PutNewWAL is PutWALDigest for a caller that has just found with StatWAL
// that name is archived under none of its names: it does not look again
// (on a remote archive, a round trip per name). Put itself still refuses
// to replace the file it writes.
func PutNewWAL(ctx context.Context, st Storage, name string, r io.Reader, c Compression, digest string) error {
	put := st.Put
	if dp, ok := st.(DigestPutter); ok && digest != "" {
		put = func(ctx context.Context, name string, r io.Reader) error { return dp.PutDigest(ctx, name, r, digest) }
	}
	if c == None {
		return putRaw(ctx, st, put, name, r)
	}
	if !storedAsS2(name) {
		c = c.ForFiles()
	}
	zr := compressSummedAs(r, c)
	defer zr.Close()
	return put(ctx, WALPath(name, c.Suffix()), zr)
}

// putRaw stores a raw WAL file with put and its checksum file beside it.
// The checksum is known once the last byte is read, before put has made
// the file durable; the checksum file is then written at once, so that the
// two files' fsyncs and renames overlap (on a local disk one journal commit
// instead of two in a row, on a remote archive one round trip less).
//
// It is created only where no checksum file is (Put never replaces), so a
// concurrent push of the same name loses nothing; where one is, the usual
// WriteChecksum rule decides once the file itself is stored. A checksum
// file left by a put that then failed describes no file: readers look for
// it only beside its file, and the next push of the name keeps it or
// replaces it.
func putRaw(ctx context.Context, st Storage, put func(context.Context, string, io.Reader) error, name string, r io.Reader) error {
	hr := &hashingReader{r: r, h: xxhash.New()}
	var (
		sum     Checksum // set before started
		started atomic.Bool
		sumErr  = make(chan error, 1)
	)
	er := &eofReader{r: hr, eof: func() {
		sum = Checksum{Sum: hr.h.Sum64(), Size: hr.n}
		started.Store(true)
		go func() { sumErr <- st.Put(ctx, ChecksumPath(name), strings.NewReader(sum.String())) }()
	}}
	err := put(ctx, WALPath(name, ""), er)
	if !started.Load() {
		// put never saw the end (it failed, or it stopped at the size it
		// was told): the checksum, if any, is written after it.
		if err != nil {
			return err
		}
		return WriteChecksum(ctx, st, name, Checksum{Sum: hr.h.Sum64(), Size: hr.n})
	}
	serr := <-sumErr
	switch {
	case err != nil:
		return err
	case IsExist(serr):
		return WriteChecksum(ctx, st, name, sum)
	}
	return serr
}

// eofReader reads r and calls eof once, when r first returns io.EOF, before
// that Read returns.
type eofReader struct {
	r   io.Reader
	eof func()
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF && e.eof != nil {
		e.eof()
		e.eof = nil
	}
	return n, err
}

// Checksum is the content of a raw file's checksum file.
type Checksum struct {
	Sum  uint64 // XXH64, seed 0
	Size int64
}

// ChecksumOf returns the checksum of what r reads.
func ChecksumOf(r io.Reader) (Checksum, error) {
	h := xxhash.New()
	n, err := io.Copy(h, r)
	return Checksum{Sum: h.Sum64(), Size: n}, err
}

func (c Checksum) String() string { return fmt.Sprintf("xxh64 %016x %d\n", c.Sum, c.Size) }

// parseChecksum parses a checksum file.
func parseChecksum(b []byte) (Checksum, error) {
	f := strings.Fields(string(b))
	if len(f) != 3 || f[0] != "xxh64" || len(f[1]) != 16 {
		return Checksum{}, fmt.Errorf("%w: checksum file holds %q, want \"xxh64 <16 hex digits> <size>\"", ErrCorrupt, b)
	}
	sum, err1 := strconv.ParseUint(f[1], 16, 64)
	size, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || size < 0 {
		return Checksum{}, fmt.Errorf("%w: checksum file holds %q", ErrCorrupt, b)
	}
	return Checksum{Sum: sum, Size: size}, nil
}

// WriteChecksum stores the checksum file of the raw WAL file name. One that
// exists with the same content is kept; one with other content is left from
// an earlier file of that name, removed since (cleanup removes the file
// before its checksum), and is replaced: the caller has just stored, or
// compared byte for byte, the file it describes.
func WriteChecksum(ctx context.Context, st Storage, name string, c Checksum) error {
	path := ChecksumPath(name)
	err := st.Put(ctx, path, strings.NewReader(c.String()))
	if !IsExist(err) {
		return err
	}
	if old, rerr := readChecksum(ctx, st, name); rerr == nil && old == c {
		return nil
	}
	if err := st.Remove(ctx, path); err != nil && !IsNotExist(err) {
		return err
	}
	return st.Put(ctx, path, strings.NewReader(c.String()))
}

// readChecksum reads the checksum file of the raw WAL file name; a missing
// one matches fs.ErrNotExist.
func readChecksum(ctx context.Context, st Storage, name string) (Checksum, error) {
	rc, err := st.Open(ctx, ChecksumPath(name))
	if err != nil {
		return Checksum{}, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 256))
	if err != nil {
		return Checksum{}, err
	}
	return parseChecksum(b)
}

// hashingReader counts what it reads, and hashes it into h when h is set.
type hashingReader struct {
	r io.Reader
	h hash.Hash64
	n int64
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if h.h != nil {
		h.h.Write(p[:n])
	}
	h.n += int64(n)
	return n, err
}

// FlatPath returns where a pg_standby-style archive keeps the WAL file
// name: at its root, as "cp %p /archive/%f" wrote it.
func FlatPath(name string) string { return name }

// StatWAL finds the archived copy of a WAL file, trying every suffix under
// wal/ and then the archive's root (a pg_standby archive, read as it is),
// and returns its info and suffix. A file that is not archived returns an
// error matching fs.ErrNotExist.
//
// It asks for every name at once: on a remote archive each is a round
// trip, and a name not archived (the common case of a push) must be
// looked up under all of them. The answer is the one of asking in turn.
func StatWAL(ctx context.Context, st Storage, name string) (FileInfo, string, error) {
	paths := walPaths(name)
	type result struct {
		fi  FileInfo
		err error
	}
	res := make([]result, len(paths))
	var wg sync.WaitGroup
	for i := 1; i < len(paths); i++ {
		wg.Go(func() { res[i].fi, res[i].err = st.Stat(ctx, paths[i]) })
	}
	res[0].fi, res[0].err = st.Stat(ctx, paths[0])
	wg.Wait()
	for i, r := range res {
		if r.err == nil {
			return r.fi, CompressionOf(paths[i]).Suffix(), nil
		}
		if !IsNotExist(r.err) {
			return FileInfo{}, "", r.err
		}
	}
	return FileInfo{}, "", fmt.Errorf("%s: %w", name, errNotExist)
}

// walPaths lists where a WAL file may be stored, in the order readers look.
func walPaths(name string) []string {
	suffixes := WALSuffixes(name)
	paths := make([]string, 0, len(suffixes)+1)
	for _, suffix := range suffixes {
		paths = append(paths, WALPath(name, suffix))
	}
	return append(paths, FlatPath(name))
}

// WALSuffixes lists the suffixes the WAL file name may be stored with
// under wal/, most likely first: Suffixes for a segment, without ".s2"
// for the files never stored so (storedAsS2).
func WALSuffixes(name string) []string {
	if storedAsS2(name) {
		return Suffixes
	}
	return Suffixes[:2]
}

// storedAsS2 reports whether a push told to store S2 stores the WAL file
// name so: a segment, or a .partial one. A .history or .backup file is a
// few hundred bytes, where zstd costs nothing and S2 saves nothing, and
// readers looking for one (a standby asks for every timeline's history,
// most of them missing) then have one name less to try.
func storedAsS2(name string) bool {
	n, err := wal.ParseName(name)
	return err == nil && (n.Kind == wal.Segment || n.Kind == wal.Partial)
}

// OpenWAL opens the archived copy of a WAL file and returns a reader of its
// original bytes, decompressed, with the size stored for a raw file (-1 when
// compressed, where the size is known only at the end). A missing file
// returns an error matching fs.ErrNotExist; damaged data reads as an error
// matching ErrCorrupt: a zstd file that fails its checksums, or a raw file
// that does not match its checksum file. A raw file without one (copied in
// by another tool, or a pg_standby archive's file at the root) is returned
// unchecked: its reader is a *RawReader whose Checked method says so.
func OpenWAL(ctx context.Context, st Storage, name string) (io.ReadCloser, int64, error) {
	for _, path := range walPaths(name) {
		rc, err := st.Open(ctx, path)
		if IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		if c := CompressionOf(path); c != None {
			newReader := NewFrameReaderOf
			if endsWithSumFrame(rc, c) {
				newReader = newSummedFrameReader
			}
			fr := newReader(c, rc)
			return readCloser{FrameReader: fr, close: func() error { fr.Close(); return rc.Close() }}, -1, nil
		}
		fi, err := st.Stat(ctx, path)
		if err != nil {
			rc.Close()
			return nil, 0, err
		}
		raw := &RawReader{rc: rc, hr: hashingReader{r: rc}, name: name, flat: path == FlatPath(name)}
		if path == WALPath(name, "") {
			c, err := readChecksum(ctx, st, name)
			switch {
			case err == nil:
				raw.want, raw.hr.h = &c, xxhash.New()
			case !IsNotExist(err):
				rc.Close()
				return nil, 0, fmt.Errorf("%s: read its checksum: %w", name, err)
			}
		}
		return raw, fi.Size, nil
	}
	return nil, 0, fmt.Errorf("%s: %w", name, errNotExist)
}

// endsWithSumFrame reports whether rc, a file of c just opened, is a local
// file whose last bytes are a sum frame: one pread of 32 bytes, against
// the frames' own checksums that its FrameReader then need not compute
// (newSummedFrameReader). Files of other backends, where that read is a
// round trip, are read as they come.
func endsWithSumFrame(rc io.ReadCloser, c Compression) bool {
	f, ok := rc.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	_, ok, err = sumFrameAt(f, fi.Size(), c)
	return ok && err == nil
}

// RawReader reads a raw archived WAL file, and checks it against its
// checksum file when it has one: at the end of the file, a mismatch reads as
// an error matching ErrCorrupt.
type RawReader struct {
	rc   io.ReadCloser
	hr   hashingReader // of rc; hashes only when want is set
	name string
	want *Checksum // nil: no checksum file
	flat bool
}

// Flat reports whether the file is at the archive's root, as in a
// pg_standby archive, rather than under wal/.
func (r *RawReader) Flat() bool { return r.flat }

// Checked reports whether the file has a checksum file that reading it
// whole verifies.
func (r *RawReader) Checked() bool { return r.want != nil }

func (r *RawReader) Read(p []byte) (int, error) {
	n, err := r.hr.Read(p)
	if err == io.EOF && r.want != nil {
		if got := (Checksum{Sum: r.hr.h.Sum64(), Size: r.hr.n}); got != *r.want {
			return n, fmt.Errorf("%w: %s does not match its checksum file (%s): read %d bytes, xxh64 %016x; want %d bytes, xxh64 %016x",
				ErrCorrupt, r.name, ChecksumPath(r.name), got.Size, got.Sum, r.want.Size, r.want.Sum)
		}
	}
	return n, err
}

// Close closes the file.
func (r *RawReader) Close() error { return r.rc.Close() }

// readCloser reads from a FrameReader and closes it and its source. It
// passes WriteTo on, so io.Copy decodes in parallel.
type readCloser struct {
	*FrameReader
	close func() error
}

func (r readCloser) Close() error { return r.close() }
