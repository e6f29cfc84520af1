package shipper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// Defaults of a Tail's settings.
const (
	DefaultTailInterval   = 200 * time.Millisecond
	DefaultTailLogEvery   = 10 * time.Second
	DefaultTailMaxBackoff = 5 * time.Second
)

// maxIncrement bounds one increment, so that catching up on a 1 GiB
// segment does not hold it in memory at once.
const maxIncrement = 8 << 20

// Position is where a server's durable WAL ends.
type Position struct {
	// LSN is the flush position, pg_current_wal_flush_lsn(): WAL before it
	// is on the server's disk, WAL after it may never be.
	LSN wal.LSN
	// TLI is the timeline the server writes.
	TLI wal.TimeLine
	// SegmentSize is the server's wal_segment_size.
	SegmentSize int64
}

// Source is the server whose WAL a Tail ships.
type Source interface {
	// Flush returns the server's current flush position. An error matching
	// ErrInRecovery says the server is a standby; Tail waits for it to be
	// promoted.
	Flush(ctx context.Context) (Position, error)
	// OpenSegment opens the segment file name in the server's pg_wal. A
	// missing file returns an error matching fs.ErrNotExist.
	OpenSegment(name string) (SegmentFile, error)
}

// SegmentFile is an open segment file of pg_wal.
type SegmentFile interface {
	io.ReaderAt
	io.Closer
}

// ErrInRecovery is returned by a Source whose server is in recovery, where
// there is no flush position of its own to follow.
var ErrInRecovery = errors.New("the server is in recovery")

// errArchivedWhole says a segment that was to be shipped is archived whole
// already, so its tail is not needed.
var errArchivedWhole = errors.New("segment is archived whole")

// TailStats counts what a Tail shipped since it started.
type TailStats struct {
	Increments  int64 // files stored
	WALBytes    int64 // bytes of WAL shipped
	StoredBytes int64 // bytes stored, after compression
}

// Tail ships the WAL a primary has flushed but not yet archived, as small
// increments of the current segment, so that a standby promoted after the
// primary died loses at most about one Interval of commits. Run is the
// daemon; each poll costs one query, one read of the new bytes and one Put.
type Tail struct {
	Storage     archive.Storage
	Source      Source
	Compression archive.Compression
	Logger      *slog.Logger

	// Interval is the time between two polls of the flush position.
	Interval time.Duration
	// LogEvery is how often Run logs its lag.
	LogEvery time.Duration
	// MaxBackoff caps the delay between retries while the server or the
	// archive fails.
	MaxBackoff time.Duration

	// Now and After are the clock; tests replace them.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time

	// Observer, if not nil, is told of every increment, poll and archive
	// error, for metrics.
	Observer TailObserver

	cur     *tailSegment // the segment being shipped; nil before the first poll
	id      *archive.Identity
	in, out []byte // an increment's chunk buffers, raw and compressed
	enc     archive.FrameEncoder
	stats   TailStats

	flush       Position  // the last flush position read
	caughtUp    time.Time // when everything flushed was last shipped
	warnedBack  bool
	inRecovery  bool
	lastLogged  TailStats
	lastLogTime time.Time
}

// tailSegment is the segment a Tail ships.
type tailSegment struct {
	name    string
	tli     wal.TimeLine
	segno   wal.SegNo
	size    int64
	shipped int64 // bytes [0, shipped) are in the archive
	f       SegmentFile
}

func (s *tailSegment) end() wal.LSN { return s.segno.Start(s.size) + wal.LSN(s.shipped) }

// Stats returns what t shipped so far. It is not safe to call while Run
// runs.
func (t *Tail) Stats() TailStats { return t.stats }

// Run polls the flush position every Interval and ships the new WAL, until
// ctx is done; then it returns nil. A server or archive that fails is
// retried with backoff, skipping no byte. It returns an error only for what
// retrying cannot fix: an archive of another cluster.
func (t *Tail) Run(ctx context.Context) error {
	defer t.closeSegment()
	log := t.logger()
	t.lastLogTime = t.now()
	if t.caughtUp.IsZero() {
		t.caughtUp = t.lastLogTime // lag is counted from the start at most
	}
	failures := 0
	lastErr := ""
	var backoff time.Duration
	for {
		began := t.now()
		err := t.Step(ctx)
		if ctx.Err() != nil {
			t.logLag()
			return nil
		}
		wait := t.interval() - t.now().Sub(began)
		switch {
		case err == nil:
			if failures > 0 {
				log.Info("tail shipping again", "failed_attempts", failures)
			}
			if t.inRecovery {
				log.Info("the server was promoted: shipping its WAL", "timeline", t.flush.TLI)
			}
			failures, backoff, lastErr, t.inRecovery = 0, 0, "", false
		case errors.Is(err, archive.ErrIdentityMismatch):
			return err
		case errors.Is(err, ErrInRecovery):
			if !t.inRecovery {
				log.Info("the server is in recovery: shipping starts when it is promoted", "err", err)
				t.inRecovery = true
			}
			wait = max(wait, time.Second)
		default:
			failures++
			backoff = min(max(2*backoff, t.interval()), t.maxBackoff())
			wait = backoff
			if failures == 1 || failures%10 == 0 || err.Error() != lastErr {
				log.Warn("tail shipping failed, retrying", "err", err, "attempt", failures, "retry_in", backoff)
			}
			lastErr = err.Error()
		}
		if t.now().Sub(t.lastLogTime) >= t.logEvery() {
			t.logLag()
		}
		select {
		case <-ctx.Done():
			t.logLag()
			return nil
		case <-t.after(max(wait, 0)):
		}
	}
}

// Step reads the flush position once and ships the WAL up to it: the rest
// of every earlier segment not archived whole yet, then the new bytes of the
// current one. After an error nothing is lost: the next Step starts where
// the archive ends.
func (t *Tail) Step(ctx context.Context) error {
	defer t.observeLag()
	pos, err := t.Source.Flush(ctx)
	if errors.Is(err, ErrInRecovery) {
		// A standby has nothing to ship, so it is not behind: once it is
		// promoted the lag counts from here, not from when Run started.
		t.caughtUp = t.now()
	}
	if err != nil {
		return err
	}
	if !wal.ValidSegmentSize(pos.SegmentSize) || pos.TLI == 0 {
		return fmt.Errorf("server reported segment size %d, timeline %d", pos.SegmentSize, pos.TLI)
	}
	t.flush = pos
	if err := t.shipTo(ctx, pos); err != nil {
		return err
	}
	if t.cur.tli == pos.TLI && t.cur.end() >= pos.LSN {
		t.caughtUp = t.now()
	}
	return nil
}

func (t *Tail) shipTo(ctx context.Context, pos Position) error {
	size := pos.SegmentSize
	// Computed here, not taken from pg_walfile_name_offset(): at an exact
	// segment boundary PostgreSQL 16 and older name the previous file.
	target := wal.SegmentOf(pos.LSN, size)
	if t.cur == nil {
		if err := t.resume(ctx, pos); err != nil {
			return err
		}
	}
	if t.cur.tli != pos.TLI || t.cur.size != size {
		// A promotion: the old timeline's segment ends at the switch point,
		// and the server archives it as .partial; the new timeline's first
		// segment starts over from offset 0.
		t.logger().Info("timeline switch: shipping the new timeline", "timeline", pos.TLI,
			"previous_timeline", t.cur.tli, "segment", wal.SegmentName(pos.TLI, target, size))
		if err := t.begin(ctx, pos.TLI, target, size); err != nil {
			return err
		}
	}
	if t.cur.segno > target || (t.cur.segno == target && t.cur.end() > pos.LSN) {
		if !t.warnedBack {
			t.logger().Warn("the flush position is behind what was shipped (was the cluster restored from a backup?); waiting for it to pass",
				"lsn", pos.LSN, "shipped", t.cur.end())
			t.warnedBack = true
		}
		return nil
	}
	t.warnedBack = false
	for t.cur.segno < target {
		if err := t.finish(ctx); err != nil {
			return err
		}
		if err := t.begin(ctx, pos.TLI, t.cur.segno+1, size); err != nil {
			return err
		}
	}
	return t.ship(ctx, wal.SegmentOffset(pos.LSN, size))
}

// resume picks the segment to start with: the one holding the flush
// position, or the one before it when its tail was left unfinished (walship
// tail was down when the server moved on) and it is not archived whole.
func (t *Tail) resume(ctx context.Context, pos Position) error {
	size := pos.SegmentSize
	target := wal.SegmentOf(pos.LSN, size)
	if target > 0 {
		prev := wal.SegmentName(pos.TLI, target-1, size)
		rs, err := archive.ListIncrements(ctx, t.Storage, prev)
		if err != nil {
			return t.archiveErr(ctx, fmt.Errorf("list tail of %s: %w", prev, err))
		}
		if len(rs) > 0 && archive.ContiguousEnd(rs) < size {
			if _, _, err := archive.StatWAL(ctx, t.Storage, prev); archive.IsNotExist(err) {
				return t.begin(ctx, pos.TLI, target-1, size)
			} else if err != nil {
				return t.archiveErr(ctx, err)
			}
		}
	}
	return t.begin(ctx, pos.TLI, target, size)
}

// begin makes segment segno of timeline tli the current one, continuing
// where its increments in the archive end.
func (t *Tail) begin(ctx context.Context, tli wal.TimeLine, segno wal.SegNo, size int64) error {
	name := wal.SegmentName(tli, segno, size)
	rs, err := archive.ListIncrements(ctx, t.Storage, name)
	if err != nil {
		return t.archiveErr(ctx, fmt.Errorf("list tail of %s: %w", name, err))
	}
	t.closeSegment()
	t.cur = &tailSegment{name: name, tli: tli, segno: segno, size: size, shipped: archive.ContiguousEnd(rs)}
	if t.cur.shipped > 0 {
		t.logger().Debug("continuing the tail the archive holds", "segment", name, "offset", t.cur.shipped)
	}
	return nil
}

// finish ships the rest of the current segment, which the server has left,
// unless it is archived whole; then its increments are not needed.
func (t *Tail) finish(ctx context.Context) error {
	archived := func() (bool, error) {
		_, _, err := archive.StatWAL(ctx, t.Storage, t.cur.name)
		if archive.IsNotExist(err) {
			return false, nil
		}
		return err == nil, t.archiveErr(ctx, err)
	}
	whole, err := archived()
	if err != nil {
		return err
	}
	if !whole {
		err := t.ship(ctx, t.cur.size)
		if err != nil && !errors.Is(err, errArchivedWhole) {
			return err
		}
		// push removes the increments of what it archives. Look once more
		// now that the last one is stored: a push that finished before it
		// did not see it.
		if whole, err = archived(); err != nil {
			return err
		}
	}
	if whole {
		if _, err := RemoveTail(ctx, t.Storage, t.cur.name); err != nil {
			t.archiveErr(ctx, err)
			t.logger().Warn("cannot remove the tail increments of an archived segment", "segment", t.cur.name, "err", err)
		}
	}
	if t.Observer != nil {
		t.Observer.SegmentArchived(t.cur.name)
	}
	return nil
}

// ship stores bytes [shipped, upto) of the current segment.
func (t *Tail) ship(ctx context.Context, upto int64) error {
	s := t.cur
	for s.shipped < upto {
		n := min(upto-s.shipped, maxIncrement)
		r, err := t.read(ctx, s.shipped, s.shipped+n)
		if err != nil {
			return err
		}
		name := TailDir(s.name) + "/" + archive.IncrementName(s.shipped, s.shipped+n, t.Compression)
		err = t.Storage.Put(ctx, name, r)
		var rerr *tailReadError
		switch {
		case errors.Is(err, errRecycled):
			t.closeSegment()
			return t.gone(ctx, errRecycled.Error())
		case errors.As(err, &rerr):
			return rerr // the file failed, not the archive
		case archive.IsExist(err):
			// Stored by an earlier attempt whose reply was lost, or by
			// another tail: trust the archive.
			rs, lerr := archive.ListIncrements(ctx, t.Storage, s.name)
			if lerr != nil {
				return t.archiveErr(ctx, lerr)
			}
			if end := archive.ContiguousEnd(rs); end > s.shipped {
				s.shipped = end
				continue
			}
		}
		if err != nil {
			return t.archiveErr(ctx, fmt.Errorf("store tail of %s: %w", s.name, err))
		}
		s.shipped += n
		t.stats.Increments++
		t.stats.WALBytes += n
		t.stats.StoredBytes += r.n
		if t.Observer != nil {
			t.Observer.Shipped(s.name, s.end(), n, r.n)
		}
	}
	return nil
}

// read returns a reader of bytes [start, end) of the current segment's
// file as the increment stores them. PostgreSQL recycles segment files by
// renaming them, and rewrites them from the first page on: while the first
// page still names the segment after the last byte was read, the bytes read
// before were the segment's own. The reader checks that at its end and
// fails the Put otherwise; read checks it first, and the archive's
// identity, before anything is stored.
func (t *Tail) read(ctx context.Context, start, end int64) (*incrementReader, error) {
	s := t.cur
	if s.f == nil {
		f, err := t.Source.OpenSegment(s.name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, t.gone(ctx, "the file is gone from pg_wal")
		}
		if err != nil {
			return nil, err
		}
		s.f = f
	}
	h, ok, err := segmentHolds(s.f, s.segno, s.size)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.name, err)
	}
	if !ok {
		t.closeSegment()
		return nil, t.gone(ctx, errRecycled.Error())
	}
	if err := t.checkIdentity(ctx, h); err != nil {
		return nil, err
	}
	f := s.f
	return &incrementReader{
		f: f, name: s.name, start: start, end: end, off: start,
		compress: t.Compression == archive.Zstd,
		holds: func() (bool, error) {
			_, ok, err := segmentHolds(f, s.segno, s.size)
			return ok, err
		},
		in: &t.in, out: &t.out, enc: &t.enc,
	}, nil
}

// gone explains a segment file that no longer holds the segment. That is
// expected only once the segment is archived whole.
func (t *Tail) gone(ctx context.Context, why string) error {
	_, _, err := archive.StatWAL(ctx, t.Storage, t.cur.name)
	if err == nil {
		return errArchivedWhole
	}
	if !archive.IsNotExist(err) {
		return t.archiveErr(ctx, err)
	}
	return fmt.Errorf("segment %s is not archived and %s before its tail was shipped: is archive_mode on?", t.cur.name, why)
}

// checkIdentity refuses to ship into an archive of another cluster, and
// records the identity of an empty archive as push does.
func (t *Tail) checkIdentity(ctx context.Context, h wal.LongHeader) error {
	if t.id == nil {
		id, err := archive.ReadIdentity(ctx, t.Storage)
		if errors.Is(err, archive.ErrNoIdentity) {
			id, err = archive.InitIdentity(ctx, t.Storage, archive.IdentityFromHeader(h, t.now()))
		}
		if err != nil {
			return t.archiveErr(ctx, err)
		}
		t.id = &id
	}
	if err := t.id.Check(h); err != nil {
		return fmt.Errorf("tail of %s: %w", t.cur.name, err)
	}
	return nil
}

func (t *Tail) closeSegment() {
	if t.cur != nil && t.cur.f != nil {
		t.cur.f.Close()
		t.cur.f = nil
	}
}

// archiveErr tells the Observer that an archive operation failed with err,
// unless err is nil or ctx ended, and returns err.
func (t *Tail) archiveErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() == nil && t.Observer != nil {
		t.Observer.ArchiveError(err)
	}
	return err
}

// lag returns how far the archive is behind the flush position: in bytes as
// of the last poll, and in seconds since everything flushed was shipped.
func (t *Tail) lag(now time.Time) TailLag {
	l := TailLag{Flush: t.flush.LSN}
	if !t.caughtUp.IsZero() {
		l.Seconds = now.Sub(t.caughtUp).Seconds()
	}
	if t.cur != nil {
		l.Shipped = t.cur.end()
		if t.cur.tli == t.flush.TLI && t.flush.LSN > l.Shipped {
			l.Bytes = int64(t.flush.LSN - l.Shipped)
		}
	}
	return l
}

func (t *Tail) observeLag() {
	if t.Observer != nil {
		t.Observer.Lag(t.lag(t.now()))
	}
}

// logLag logs the lag and what was shipped since it last did.
func (t *Tail) logLag() {
	now := t.now()
	args := []any{"lsn", t.flush.LSN, "timeline", t.flush.TLI}
	if t.cur != nil {
		l := t.lag(now)
		args = append(args, "segment", t.cur.name, "offset", t.cur.shipped, "lag_bytes", l.Bytes,
			"lag_seconds", fmt.Sprintf("%.1f", l.Seconds))
	}
	d := now.Sub(t.lastLogTime).Seconds()
	s := t.stats
	args = append(args, "increments", s.Increments, "wal_bytes", s.WALBytes, "stored_bytes", s.StoredBytes)
	if d > 0 {
		args = append(args, "wal_bytes_per_second", int64(float64(s.WALBytes-t.lastLogged.WALBytes)/d))
	}
	t.logger().Info("tail lag", args...)
	t.lastLogged, t.lastLogTime = s, now
}

func (t *Tail) interval() time.Duration {
	if t.Interval > 0 {
		return t.Interval
	}
	return DefaultTailInterval
}

func (t *Tail) logEvery() time.Duration {
	if t.LogEvery > 0 {
		return t.LogEvery
	}
	return DefaultTailLogEvery
}

func (t *Tail) maxBackoff() time.Duration {
	if t.MaxBackoff > 0 {
		return t.MaxBackoff
	}
	return DefaultTailMaxBackoff
}

func (t *Tail) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *Tail) after(d time.Duration) <-chan time.Time {
	if t.After != nil {
		return t.After(d)
	}
	return time.After(d)
}

func (t *Tail) logger() *slog.Logger {
	if t.Logger != nil {
		return t.Logger
	}
	return slog.New(slog.DiscardHandler)
}
