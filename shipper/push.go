package shipper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// ErrConflict is returned when the archive holds a different file under the
// name being pushed. The archived file is left as it is: it may be the only
// copy of WAL a standby needs, so only an operator may decide which is right.
var ErrConflict = errors.New("a different file is archived under this name")

// ErrBadFile is returned for a file that cannot be what its name says: a
// truncated or oversized segment, or one without a valid page header.
var ErrBadFile = errors.New("not a valid WAL file")

// maxTextFile bounds .history and .backup files, which are a few hundred
// bytes; a larger one is a mistake, not WAL.
const maxTextFile = 1 << 20

// Pusher ships whole WAL files into an archive.
type Pusher struct {
	Storage     archive.Storage
	Compression archive.Compression
	Logger      *slog.Logger
	Now         func() time.Time // defaults to time.Now
}

// Push archives the file at path under the WAL file name name, durably, and
// returns nil only once it is safe in the archive. Pushing a file that is
// archived already with the same content returns nil, as PostgreSQL
// re-archives after a crash; different content returns ErrConflict.
//
// Segments and .partial files must be whole (their size is the segment size
// of their own page header) and belong to the archive's cluster; the first
// segment pushed into an empty archive records its identity. Once a segment
// or .partial file is archived, the tail increments of its segment go.
func (p *Pusher) Push(ctx context.Context, path, name string) error {
	err := p.push(ctx, path, name)
	if err == nil {
		p.removeTail(ctx, name)
	}
	return err
}

func (p *Pusher) push(ctx context.Context, path, name string) error {
	n, err := wal.ParseName(name)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("push %s: %w: %s is not a regular file", name, ErrBadFile, path)
	}
	size := fi.Size()
	start := p.now()

	switch n.Kind {
	case wal.Segment, wal.Partial:
		if err := p.checkSegment(ctx, f, n, size); err != nil {
			return fmt.Errorf("push %s: %w", name, err)
		}
	case wal.History:
		if size > maxTextFile {
			return fmt.Errorf("push %s: %w: %d bytes is too large for a history file", name, ErrBadFile, size)
		}
		b, err := io.ReadAll(f)
		if err != nil {
			return fmt.Errorf("push %s: %w", name, err)
		}
		if _, err := wal.ParseHistory(b); err != nil {
			return fmt.Errorf("push %s: %w: %w", name, ErrBadFile, err)
		}
	case wal.Backup:
		if size > maxTextFile {
			return fmt.Errorf("push %s: %w: %d bytes is too large for a backup history file", name, ErrBadFile, size)
		}
	}

	// A re-push is common (the server re-archives after a crash); find out
	// before compressing anything.
	if _, _, err := archive.StatWAL(ctx, p.Storage, name); err == nil {
		return p.compareArchived(ctx, f, n, size)
	} else if !archive.IsNotExist(err) {
		return fmt.Errorf("push %s: %w", name, err)
	}

	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	src := &exactReader{r: f, want: size}
	err = archive.PutWAL(ctx, p.Storage, name, src, p.Compression)
	if archive.IsExist(err) {
		// Another push of the same name won the race.
		return p.compareArchived(ctx, f, n, size)
	}
	if err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	p.logger().Info("archived", "file", name, "bytes", size, "compress", p.Compression.String(),
		"ms", p.now().Sub(start).Milliseconds(), "archive", p.Storage.String())
	return nil
}

// checkSegment checks a segment's size and page header, and the archive's
// identity, recording the identity if the archive has none yet.
func (p *Pusher) checkSegment(ctx context.Context, f *os.File, n wal.Name, size int64) error {
	buf := make([]byte, wal.LongHeaderSize)
	if _, err := io.ReadFull(f, buf); err != nil {
		return fmt.Errorf("%w: %d bytes is too short for a segment", ErrBadFile, size)
	}
	h, err := wal.ParseLongHeader(buf)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadFile, err)
	}
	if size != int64(h.SegmentSize) {
		return fmt.Errorf("%w: %w: file has %d bytes, its header says segments have %d (truncated or still being written?)",
			ErrBadFile, wal.ErrSegmentSize, size, h.SegmentSize)
	}
	if err := h.Check(n, 0, int64(h.SegmentSize)); err != nil {
		return fmt.Errorf("%w: %w", ErrBadFile, err)
	}
	id, err := archive.ReadIdentity(ctx, p.Storage)
	if errors.Is(err, archive.ErrNoIdentity) {
		id, err = archive.InitIdentity(ctx, p.Storage, archive.IdentityFromHeader(h, p.now()))
		if err == nil && id.SystemID == h.SystemID {
			p.logger().Info("recorded archive identity", "system_identifier", id.SystemID,
				"pg_version", id.PGVersion, "segment_size", id.SegmentSize, "archive", p.Storage.String())
		}
	}
	if err != nil {
		return err
	}
	return id.Check(h)
}

// compareArchived returns nil if the archived copy of n holds exactly the
// size bytes of f, and ErrConflict if it holds anything else.
func (p *Pusher) compareArchived(ctx context.Context, f *os.File, n wal.Name, size int64) error {
	name := n.String()
	rc, _, err := archive.OpenWAL(ctx, p.Storage, name)
	if err != nil {
		return fmt.Errorf("push %s: compare with archived copy: %w", name, err)
	}
	defer rc.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	same, err := sameContent(io.LimitReader(f, size), rc)
	if err != nil {
		if errors.Is(err, archive.ErrCorrupt) {
			return fmt.Errorf("push %s: %w (archived copy is damaged: %w); check it with walship verify and remove it by hand if the local file is right",
				name, ErrConflict, err)
		}
		return fmt.Errorf("push %s: compare with archived copy: %w", name, err)
	}
	if !same {
		return fmt.Errorf("push %s: %w; the archived file was left untouched: check that this archive (%s) is used by one cluster only",
			name, ErrConflict, p.Storage)
	}
	p.logger().Info("already archived with identical content", "file", name, "archive", p.Storage.String())
	return nil
}

// sameContent reports whether a and b read the same bytes.
func sameContent(a, b io.Reader) (bool, error) {
	const chunk = 1 << 20
	ba, bb := make([]byte, chunk), make([]byte, chunk)
	for {
		na, errA := io.ReadFull(a, ba)
		if errA != nil && errA != io.EOF && errA != io.ErrUnexpectedEOF {
			return false, errA
		}
		nb, errB := io.ReadFull(b, bb)
		if errB != nil && errB != io.EOF && errB != io.ErrUnexpectedEOF {
			return false, errB
		}
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if na < chunk {
			return true, nil
		}
	}
}

func (p *Pusher) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Pusher) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// exactReader reads r and fails unless it holds exactly want bytes, so a
// file that grows or shrinks while it is pushed is never archived.
type exactReader struct {
	r    io.Reader
	want int64
	got  int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.got += int64(n)
	if e.got > e.want {
		return n, fmt.Errorf("%w: file grew while it was read", ErrBadFile)
	}
	if err == io.EOF && e.got != e.want {
		return n, fmt.Errorf("%w: file shrank to %d bytes while it was read", ErrBadFile, e.got)
	}
	return n, err
}
