package shipper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/cespare/xxhash/v2"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/crypt"
	"github.com/walship/walship/wal"
)

// ErrConflict is returned when the archive holds a different file under the
// name being pushed. The archived file is left as it is: it may be the only
// copy of WAL a standby needs, so only an operator may decide which is right.
var ErrConflict = errors.New("a different file is archived under this name")

// ErrBadFile is returned for a file that cannot be what its name says: a
// truncated or oversized segment, or one without a valid page header.
var ErrBadFile = errors.New("not a valid WAL file")

// ErrForeignCluster is returned for a file of another cluster than the
// archive's: the server that archives it (its global/pg_control) or the
// segment's own page header names another system identifier.
var ErrForeignCluster = errors.New("file of another cluster than the archive's")

// ErrUnknownCluster is returned for a .history or .backup file when the
// cluster that pushes it is not known: these files name no system
// identifier, so only the pushing server's pg_control can vouch for them.
var ErrUnknownCluster = errors.New("cannot tell which cluster this file belongs to")

// maxTextFile bounds .history and .backup files, which are a few hundred
// bytes; a larger one is a mistake, not WAL.
const maxTextFile = 1 << 20

// Pusher ships whole WAL files into an archive.
type Pusher struct {
	Storage     archive.Storage
	Compression archive.Compression
	Logger      *slog.Logger
	Now         func() time.Time // defaults to time.Now

	// SystemID is the database system identifier of the server that
	// archives, from its global/pg_control (PostgreSQL runs
	// archive_command in the data directory); zero when unknown. Every
	// file pushed must belong to the archive's cluster: segments say so in
	// their page header, .history and .backup files only through it, and
	// without it they are refused.
	SystemID uint64

	// ArchiveID is the archive as archive_command names it (its --archive
	// value). A segment shipped ahead (PushAhead) records it, so that
	// PostgreSQL's own call for that segment answers without opening the
	// archive (ShippedAhead); empty, nothing is recorded.
	ArchiveID string
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
	return p.pushFile(ctx, path, name, false)
}

// pushFile is Push; with mark, a file it archives is marked shipped on
// success (markShipped), for PostgreSQL's later call for it.
func (p *Pusher) pushFile(ctx context.Context, path, name string, mark bool) error {
	err := p.push(ctx, path, name, mark)
	if err == nil {
		p.removeTail(ctx, name)
	}
	return err
}

func (p *Pusher) push(ctx context.Context, path, name string, mark bool) error {
	n, err := wal.ParseName(name)
	if err != nil {
		return err
	}
	f, err := openRegular(path)
	if err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	size := fi.Size()
	start := p.now()

	// Everything the push reads from the archive is asked for at once,
	// while the file is checked: on a remote archive each is a round trip.
	ctx, cancel := context.WithCancel(ctx)
	ahead := p.readAhead(ctx, n, size)
	defer func() { cancel(); ahead.wait() }()

	switch n.Kind {
	case wal.Segment, wal.Partial:
		if err := p.checkSegment(ctx, f, n, size); err != nil {
			return fmt.Errorf("push %s: %w", name, err)
		}
	case wal.History, wal.Backup:
		if err := p.checkText(ctx, f, n, size); err != nil {
			return fmt.Errorf("push %s: %w", name, err)
		}
	}

	// A re-push is common (the server re-archives after a crash); find out
	// before compressing anything.
	if err := ahead.stat.get(); err == nil {
		return p.compareArchived(ctx, f, n, size)
	} else if !archive.IsNotExist(err) {
		return fmt.Errorf("push %s: %w", name, err)
	}
	ahead.startFork(ctx, p, n, size) // read while the file goes up

	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	digest, err := p.digestFor(ctx, f, size)
	if err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	src := &exactReader{r: f, want: size}
	var r io.Reader = src
	var sum *xxhash.Digest
	if mark {
		sum = xxhash.New()
		r = io.TeeReader(src, sum)
	}
	err = archive.PutNewWAL(ctx, p.Storage, name, r, p.Compression, digest)
	if archive.IsExist(err) {
		// Another push of the same name won the race.
		return p.compareArchived(ctx, f, n, size)
	}
	if err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	p.logger().Info("archived", "file", name, "bytes", size, "compress", p.Compression.String(),
		"ms", p.now().Sub(start).Milliseconds(), "archive", p.Storage.String())
	if mark && src.got == size {
		p.markShipped(f, name, sum.Sum64())
	}
	if ahead.fork != nil {
		p.warnForked(n, ahead.fork)
	}
	return nil
}

// readAhead holds the archive reads a push starts before it needs them.
type readAhead struct {
	wg   sync.WaitGroup
	stat *future[struct{}] // whether the name is archived: nil, or an error matching fs.ErrNotExist
	fork *future[forked]   // for a segment, the newer timeline that left its timeline before it
}

type forked struct {
	fork  archive.Fork
	found bool
}

// readAhead starts the lookups of a push of n, while the file is checked:
// where n is archived already, and on an encrypted archive its key sets.
// They run until ctx ends; wait waits for them.
func (p *Pusher) readAhead(ctx context.Context, n wal.Name, size int64) *readAhead {
	a := &readAhead{}
	a.stat = goFuture(&a.wg, func() (struct{}, error) {
		_, _, err := archive.StatWAL(ctx, p.Storage, n.String())
		return struct{}{}, err
	})
	if c, ok := crypt.Of(p.Storage); ok {
		a.wg.Go(func() { _, _, _ = c.Active(ctx) }) // read again, from its cache, by digestFor
	}
	return a
}

// startFork starts reading, for a segment n of size bytes about to be
// archived, the newer timelines' history files that warnForked checks.
// (Not for a re-push, which warnForked does not check.)
func (a *readAhead) startFork(ctx context.Context, p *Pusher, n wal.Name, size int64) {
	if n.Kind != wal.Segment {
		return
	}
	seg, err := n.SegNo(size)
	if err != nil {
		return
	}
	a.fork = goFuture(&a.wg, func() (forked, error) {
		f, ok, err := archive.ForkBefore(ctx, p.Storage, n.TLI, seg.Start(size))
		return forked{f, ok}, err
	})
}

func (a *readAhead) wait() { a.wg.Wait() }

// future is the result of a function running in its own goroutine.
type future[T any] struct {
	done chan struct{}
	v    T
	err  error
}

func goFuture[T any](wg *sync.WaitGroup, fn func() (T, error)) *future[T] {
	f := &future[T]{done: make(chan struct{})}
	wg.Go(func() {
		defer close(f.done)
		f.v, f.err = fn()
	})
	return f
}

func (f *future[T]) get() error {
	<-f.done
	return f.err
}

// warnForked warns, loudly, when the segment n just archived holds only WAL
// written after a newer timeline left its timeline: the server pushing it
// went on after another one took its place, and two servers whose
// histories have diverged now archive here. Both timelines' files keep
// their own names, so nothing is overwritten and recovery follows the
// history files, but the old server's new WAL is on no timeline that a
// restore to the latest one replays: fence it (stop it, or point its
// archive_command elsewhere) unless it is meant to live on. The push itself
// has succeeded: refusing it would only fill that server's pg_wal.
func (p *Pusher) warnForked(n wal.Name, fork *future[forked]) {
	err := fork.get()
	f, ok := fork.v.fork, fork.v.found
	if p.noKey(err, "checking for a diverged server") {
		return
	}
	if err != nil {
		p.logger().Warn("cannot read the archive's newer timelines to check for a diverged server", "file", n.String(), "err", err)
		return
	}
	if !ok {
		return
	}
	p.logger().Warn("TWO SERVERS ARCHIVE DIVERGED TIMELINES INTO THIS ARCHIVE: this segment holds WAL of timeline "+
		fmt.Sprint(f.Parent)+" written after timeline "+fmt.Sprint(f.Child)+" left it at "+f.At.String()+
		"; the server running this archive_command went on after another server took its place "+
		"(a failed-over old primary, or the source of a point-in-time restore that archives here too). "+
		"Fence it: stop it, rebuild it as a standby, or point its archive_command at another archive",
		"file", n.String(), "timeline", f.Parent, "newer_timeline", f.Child, "fork_lsn", f.At.String(),
		"archive", p.Storage.String())
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
	if p.SystemID != 0 && h.SystemID != p.SystemID {
		return fmt.Errorf("%w: %w: %s has system identifier %d, but the server archiving it has %d (its global/pg_control)",
			ErrForeignCluster, wal.ErrForeignSystem, n, h.SystemID, p.SystemID)
	}
	return id.Check(h)
}

// checkText checks a .history or .backup file: that the server pushing it
// is the archive's, and that the file is what its name says.
func (p *Pusher) checkText(ctx context.Context, f *os.File, n wal.Name, size int64) error {
	if size > maxTextFile {
		return fmt.Errorf("%w: %d bytes is too large for a %s file", ErrBadFile, size, n.Kind)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTextFile+1))
	if err != nil {
		return err
	}
	id, err := archive.ReadIdentity(ctx, p.Storage)
	switch {
	case errors.Is(err, archive.ErrNoIdentity):
		id = archive.Identity{}
	case err != nil:
		return err
	}
	switch {
	case p.SystemID == 0:
		return fmt.Errorf("%w: a %s file names no cluster, and no global/pg_control was found to tell which server pushes it: "+
			"run push in the data directory, as PostgreSQL does, or pass --pgdata", ErrUnknownCluster, n.Kind)
	case id.SystemID != 0 && id.SystemID != p.SystemID:
		return fmt.Errorf("%w: this server has system identifier %d (its global/pg_control), the archive %s holds WAL of %d: "+
			"point archive_command at this cluster's own archive", ErrForeignCluster, p.SystemID, p.Storage, id.SystemID)
	}
	if n.Kind == wal.Backup {
		if _, err := wal.ParseBackupHistory(n, b, id.SegmentSize); err != nil {
			return fmt.Errorf("%w: %w", ErrBadFile, err)
		}
		return nil
	}
	entries, err := wal.ParseHistory(b)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadFile, err)
	}
	return p.checkHistory(ctx, n, entries)
}

// checkHistory checks the entries of the history file of timeline n.TLI
// against the timeline it names and the history files archived already: a
// timeline's history is its parent's history plus one line, so the parent's
// archived file must be a prefix of it.
func (p *Pusher) checkHistory(ctx context.Context, n wal.Name, entries []wal.HistoryEntry) error {
	if len(entries) == 0 {
		return fmt.Errorf("%w: %s lists no parent timeline", ErrBadFile, n)
	}
	for i, e := range entries {
		if e.TLI >= n.TLI {
			return fmt.Errorf("%w: %s lists timeline %d as an ancestor of timeline %d", ErrBadFile, n, e.TLI, n.TLI)
		}
		if i > 0 && e.Switch < entries[i-1].Switch {
			return fmt.Errorf("%w: %s: timeline %d ends at %s, before its parent %d ended (%s)",
				ErrBadFile, n, e.TLI, e.Switch, entries[i-1].TLI, entries[i-1].Switch)
		}
	}
	parent := entries[len(entries)-1].TLI
	if parent == 1 {
		return nil // timeline 1 has no history file
	}
	pname := wal.HistoryName(parent)
	rc, _, err := archive.OpenWAL(ctx, p.Storage, pname)
	if archive.IsNotExist(err) || p.noKey(err, "comparing with the parent timeline's history") {
		return nil // archived before walship, or elsewhere: nothing to compare with
	}
	if err != nil {
		return fmt.Errorf("read the parent timeline's history %s: %w", pname, err)
	}
	defer rc.Close()
	pb, err := io.ReadAll(io.LimitReader(rc, maxTextFile))
	if err != nil {
		return fmt.Errorf("read the parent timeline's history %s: %w", pname, err)
	}
	pentries, err := wal.ParseHistory(pb)
	if err != nil {
		return fmt.Errorf("the archived %s: %w", pname, err)
	}
	if len(pentries) != len(entries)-1 {
		return fmt.Errorf("%w: %s has %d ancestors; the archived %s has %d, want one fewer", ErrForeignCluster, n, len(entries), pname, len(pentries))
	}
	for i, e := range pentries {
		if e.TLI != entries[i].TLI || e.Switch != entries[i].Switch {
			return fmt.Errorf("%w: %s says timeline %d ended at %s, the archived %s says %s",
				ErrForeignCluster, n, entries[i].TLI, entries[i].Switch, pname, e.Switch)
		}
	}
	return nil
}

// openRegular opens path for reading if it is a regular file. A FIFO, a
// device or a directory under a WAL name is refused at once: opening a FIFO
// without O_NONBLOCK blocks until someone writes to it.
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file (%v)", ErrBadFile, path, fi.Mode().Type())
	}
	return f, nil
}

// compareArchived returns nil if the archived copy of n holds exactly the
// size bytes of f, and ErrConflict if it holds anything else.
func (p *Pusher) compareArchived(ctx context.Context, f *os.File, n wal.Name, size int64) error {
	name := n.String()
	if handled, err := p.compareDigest(ctx, f, n, size); handled {
		return err
	}
	if handled, err := p.compareChecksum(ctx, f, n, size); handled {
		return err
	}
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
	if raw, ok := rc.(*archive.RawReader); ok && !raw.Checked() && !raw.Flat() {
		// A raw copy without its checksum file: an earlier push died
		// between the two. The archived copy equals f: describe it.
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("push %s: %w", name, err)
		}
		sum, err := archive.ChecksumOf(io.LimitReader(f, size))
		if err == nil {
			err = archive.WriteChecksum(ctx, p.Storage, name, sum)
		}
		if err != nil {
			return fmt.Errorf("push %s: write the checksum of the archived copy: %w", name, err)
		}
	}
	p.logger().Info("already archived with identical content", "file", name, "archive", p.Storage.String())
	return nil
}

// compareChecksum compares f with the checksum the archive records of n
// (archive.WALChecksum), which spares reading and decompressing the
// archived copy; that copy's own integrity is checked by every read of it
// (fetch, wait, verify). It returns handled false when the archived copy
// records no checksum, or when what records it is damaged: the caller then
// compares the content, and reports the damage.
func (p *Pusher) compareChecksum(ctx context.Context, f *os.File, n wal.Name, size int64) (handled bool, err error) {
	name := n.String()
	want, err := archive.WALChecksum(ctx, p.Storage, name)
	if errors.Is(err, archive.ErrNoChecksum) || errors.Is(err, archive.ErrCorrupt) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("push %s: compare with archived copy: %w", name, err)
	}
	got, err := archive.ChecksumOf(io.NewSectionReader(f, 0, size))
	if err != nil {
		return true, fmt.Errorf("push %s: %w", name, err)
	}
	if got != want {
		return true, fmt.Errorf("push %s: %w (the archived copy has %d bytes with xxh64 %016x, this file %d bytes with xxh64 %016x); the archived file was left untouched: check that this archive (%s) is used by one cluster only",
			name, ErrConflict, want.Size, want.Sum, got.Size, got.Sum, p.Storage)
	}
	p.logger().Info("already archived with identical content", "file", name, "archive", p.Storage.String(), "compared", "checksum")
	return true, nil
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
