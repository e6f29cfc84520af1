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
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/crypt"
	"github.com/walship/walship/wal"
)

// ErrNotFound says the file is not in the archive: exit 1 for PostgreSQL.
var ErrNotFound = errors.New("not found in the archive")

// ErrBadWAL says the archive holds a file that must not be applied: corrupt,
// truncated, of another cluster, or not the segment its name says. Recovery
// must stop (an exit code above 125) rather than end or go on.
var ErrBadWAL = errors.New("archive holds bad WAL")

// errNotReady says a raw file is still being copied into the archive by a
// tool without atomic renames (plain cp): it is treated as absent for now,
// as long as no later WAL is archived (see incomplete).
var errNotReady = errors.New("archived file is not complete yet")

// ErrDestination says %p cannot be written: its directory does not exist or
// is not writable. Retrying cannot help, and the archive is not to blame.
var ErrDestination = errors.New("cannot write the restored file")

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
		return incomplete(ctx, st, n, err)
	}
	return err
}

// incomplete decides what a raw segment found short in the archive (err
// matches errNotReady) is. While no later WAL is archived it may be a copy
// in progress: err is returned, worth a retry. Once later segments exist
// it is bad WAL: "not found" would end recovery before it, and every later
// segment would be lost.
func incomplete(ctx context.Context, st archive.Storage, n wal.Name, err error) error {
	later, lerr := laterWAL(ctx, st, n)
	switch {
	case lerr != nil:
		return fmt.Errorf("%w; and listing the archive failed: %w", err, lerr)
	case later != "":
		return fmt.Errorf("%w: %w, but the archive holds later WAL (%s): the archived copy is truncated; "+
			"replace it with a whole copy of the segment, or remove it and the WAL after it", ErrBadWAL, err, later)
	}
	return err
}

// laterWAL returns the name of a segment or .partial file archived after
// segment n (a later segment on any timeline, or n's segment on a later
// timeline), or "" when there is none.
func laterWAL(ctx context.Context, st archive.Storage, n wal.Name) (string, error) {
	for _, dir := range []string{archive.WALDir, ""} {
		fis, err := st.List(ctx, dir)
		if err != nil {
			return "", err
		}
		for _, fi := range fis {
			m, err := wal.ParseName(archive.TrimCompression(fi.Name))
			if err != nil || (m.Kind != wal.Segment && m.Kind != wal.Partial) {
				continue
			}
			if m.Log > n.Log || (m.Log == n.Log && m.Seg > n.Seg) || (m.Log == n.Log && m.Seg == n.Seg && m.TLI > n.TLI) {
				return fi.Name, nil
			}
		}
	}
	return "", nil
}

// checkDest fails at once when dest's directory cannot take the restored
// file, before the archive is read.
func checkDest(dest string) error {
	dir := filepath.Dir(dest)
	fi, err := os.Stat(dir)
	switch {
	case err != nil:
		return fmt.Errorf("%w %s: %w", ErrDestination, dest, err)
	case !fi.IsDir():
		return fmt.Errorf("%w %s: %s is not a directory", ErrDestination, dest, dir)
	}
	return unix.Access(dir, unix.W_OK|unix.X_OK)
}

func restore(ctx context.Context, st archive.Storage, n wal.Name, dest string, exp Expect) error {
	name := n.String()
	if err := checkDest(dest); err != nil {
		if !errors.Is(err, ErrDestination) {
			err = fmt.Errorf("%w %s: %w", ErrDestination, dest, err)
		}
		return err
	}
	rc, rawSize, err := archive.OpenWAL(ctx, st, name)
	if archive.IsNotExist(err) {
		return fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if errors.Is(err, archive.ErrCorrupt) || errors.Is(err, crypt.ErrKey) {
		// Refused by the encryption layer: tampered with, not encrypted
		// in an encrypted archive, or no key for it. Retrying cannot help,
		// and "not found" would promote.
		return fmt.Errorf("%w: %w", ErrBadWAL, err)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer rc.Close()
	raw, _ := rc.(*archive.RawReader)
	// A raw file with a checksum file was stored whole by walship: short
	// is damage, not a copy in progress.
	copying := raw != nil && !raw.Checked()

	isSeg := n.Kind == wal.Segment || n.Kind == wal.Partial
	var want int64 = -1
	var prefix []byte // read to check the page header
	if isSeg {
		h, err := readHeader(rc, n, rawSize, exp, copying)
		if err != nil {
			return err
		}
		want = int64(h.SegmentSize)
		if rawSize >= 0 && rawSize < want {
			if copying {
				return fmt.Errorf("%s: %w: %d of %d bytes", name, errNotReady, rawSize, want)
			}
			return fmt.Errorf("%w: %s has %d bytes, the segment size is %d", ErrBadWAL, name, rawSize, want)
		}
		if rawSize > want {
			return fmt.Errorf("%w: %s has %d bytes, more than the segment size %d", ErrBadWAL, name, rawSize, want)
		}
		prefix = h.raw
	}

	tmp, err := os.CreateTemp(filepath.Dir(dest), ".walship-restore-*")
	if err != nil {
		return destError(name, dest, err)
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// A raw segment has no checksum of its own, or one taken at push from
	// what may already have been damaged WAL: verify its records, which is
	// what PostgreSQL will read. A damaged record is, to the server, the
	// end of WAL, and ends recovery.
	var out io.Writer = tmp
	var verifier *wal.SegmentVerifier
	if raw != nil && n.Kind == wal.Segment {
		verifier = wal.NewSegmentVerifier(n, want)
		out = &teeWriter{w: tmp, v: verifier}
	}
	_, err = out.Write(prefix)
	got := int64(len(prefix))
	if err == nil {
		var k int64
		k, err = copyBuffer(ctx, out, rc)
		got += k
	}
	if err == nil && verifier != nil && got == want {
		err = verifier.Close()
	}
	switch {
	case errors.Is(err, wal.ErrDamagedWAL):
		if copying && recentlyChanged(ctx, st, n) {
			// Still being written where it was preallocated.
			return fmt.Errorf("%s: %w: %w", name, errNotReady, err)
		}
		return fmt.Errorf("%w: %w", ErrBadWAL, err)
	case errors.Is(err, archive.ErrCorrupt):
		return fmt.Errorf("%w: %s: %w", ErrBadWAL, name, err)
	case errors.Is(err, errWriteDest):
		return destError(name, dest, err)
	case err != nil:
		return fmt.Errorf("restore %s: %w", name, err)
	case isSeg && got != want && copying:
		// A raw file that changed size while read is still being copied.
		return fmt.Errorf("%s: %w: read %d of %d bytes", name, errNotReady, got, want)
	case isSeg && got != want:
		return fmt.Errorf("%w: %s holds %d bytes, the segment size is %d", ErrBadWAL, name, got, want)
	}
	if n.Kind == wal.History {
		if err := checkHistory(tmp, n.TLI); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrBadWAL, name, err)
		}
	}
	if err := tmp.Close(); err != nil {
		return destError(name, dest, err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return destError(name, dest, err)
	}
	tmp = nil
	return nil
}

// errWriteDest marks a failed write of the restored file, so that it is not
// mistaken for a failed read of the archive.
var errWriteDest = errors.New("write")

// teeWriter writes to w, the restored file, and v, the verifier. An error
// of w is marked errWriteDest.
type teeWriter struct {
	w io.Writer
	v io.Writer
}

func (t *teeWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if err != nil {
		return n, fmt.Errorf("%w: %w", errWriteDest, err)
	}
	if _, err := t.v.Write(p); err != nil {
		return 0, err
	}
	return n, nil
}

// destError turns a failure to write %p into an error: ErrDestination when
// retrying cannot help (no such directory, no permission, a read-only file
// system), else one worth a retry (a full pg_wal may get space back).
func destError(name, dest string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EIO) {
		return fmt.Errorf("restore %s to %s: %w", name, dest, err)
	}
	return fmt.Errorf("%w %s (restoring %s): %w", ErrDestination, dest, name, err)
}

// recentlyChanged reports whether the archived copy of n was modified in the
// last few seconds: a raw copy still being written.
func recentlyChanged(ctx context.Context, st archive.Storage, n wal.Name) bool {
	fi, _, err := archive.StatWAL(ctx, st, n.String())
	return err == nil && time.Since(fi.ModTime) < 10*time.Second
}

type header struct {
	wal.LongHeader
	raw []byte // the bytes read to parse it
}

// readHeader reads and checks the long page header at the start of a
// segment.
func readHeader(r io.Reader, n wal.Name, rawSize int64, exp Expect, copying bool) (header, error) {
	buf := make([]byte, wal.LongHeaderSize)
	k, err := io.ReadFull(r, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		if errors.Is(err, archive.ErrCorrupt) {
			return header{}, fmt.Errorf("%w: %s: %w", ErrBadWAL, n, err)
		}
		return header{}, fmt.Errorf("read %s: %w", n, err)
	}
	buf = buf[:k]
	if copying && (k < wal.LongHeaderSize || bytes.Count(buf, []byte{0}) == len(buf)) {
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

// checkHistory checks the history file of timeline tli as the server
// reads it: it must parse and name only earlier timelines (the server
// refuses a history that does not, FATAL, at the worst moment: promotion).
func checkHistory(f *os.File, tli wal.TimeLine) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return err
	}
	entries, err := wal.ParseHistory(b)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.TLI >= tli {
			return fmt.Errorf("%w: it names timeline %d as an ancestor of timeline %d", wal.ErrInvalidHistory, e.TLI, tli)
		}
	}
	return nil
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
