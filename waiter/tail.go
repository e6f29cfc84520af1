package waiter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/trigger"
	"github.com/walship/walship/wal"
)

// The tail of a segment is stored by walship tail (shipper.Tail) as
// immutable increments wal/<segment>.tail/<start>-<end>[.zst], offsets in
// eight upper-case hex digits, end exclusive. shipper/tailname.go writes the
// format; TestTailRoundTrip checks that what it writes assembles here.

// pageHeaderSize is the size of XLogPageHeaderData, the short header that
// opens every page of a segment but the first.
const pageHeaderSize = 24

// restoreTail is the last step of a smart failover: the segment n is not
// archived whole, and walship tail may have shipped its beginning. It
// assembles the contiguous prefix of the increments from offset 0 (a gap
// ends it), checks it, pads it with zeros to the segment size (PostgreSQL
// rejects a short file; it reads the zeros as the end of WAL) and writes it
// to dest. It returns an error matching ErrNotFound when there is no usable
// tail, ErrBadWAL when the tail belongs to another cluster or segment, and
// ctx's error; an archive that cannot be read is retried here, as Wait
// does, and never reported as "not found".
func (w *Waiter) restoreTail(ctx context.Context, n wal.Name, dest string, log *slog.Logger) error {
	failures := 0
	var backoff time.Duration
	for {
		size, total, err := assembleTail(ctx, w.Storage, n, dest, w.Expect, log)
		switch {
		case err == nil:
			log.Info("smart failover: restored the tail of the segment that walship tail shipped",
				"bytes", size, "segment_size", total, "complete", size == total)
			return nil
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrBadWAL):
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		}
		if w.mode() == trigger.Fast {
			return fmt.Errorf("%s: %w (fast failover)", n, ErrNotFound)
		}
		failures++
		backoff = min(max(2*backoff, 100*time.Millisecond), w.maxBackoff())
		if failures == 1 || failures%10 == 0 {
			log.Warn("cannot read the tail of the segment, retrying", "err", err, "attempt", failures, "retry_in", backoff)
		}
		var changed <-chan struct{}
		if w.Trigger != nil {
			changed = w.Trigger.Changed()
		}
		if err := w.sleep(ctx, backoff, nil, changed); err != nil {
			return err
		}
	}
}

// assembleTail does one attempt of restoreTail and returns the length of
// the prefix and the segment size.
func assembleTail(ctx context.Context, st archive.Storage, n wal.Name, dest string, exp Expect, log *slog.Logger) (int64, int64, error) {
	name := n.String()
	incs, err := archive.ListIncrements(ctx, st, name)
	if err != nil {
		return 0, 0, fmt.Errorf("list the tail of %s: %w", name, err)
	}
	if len(incs) == 0 {
		return 0, 0, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".walship-tail-*")
	if err != nil {
		return 0, 0, fmt.Errorf("restore the tail of %s: %w", name, err)
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	limit := int64(wal.MaxSegmentSize)
	if exp.SegmentSize > 0 {
		limit = exp.SegmentSize
	}
	var pos int64
	for _, inc := range incs {
		if inc.Start > pos || inc.End > limit {
			break // a gap: only the prefix before it is WAL we can trust
		}
		if inc.End <= pos {
			continue
		}
		data, err := readIncrement(ctx, st, name, inc)
		if errors.Is(err, archive.ErrCorrupt) {
			log.Error("a tail increment is damaged: the tail ends before it", "segment", name,
				"increment", inc.Name, "err", err)
			break
		}
		if err != nil {
			return 0, 0, err
		}
		if _, err := tmp.WriteAt(data[pos-inc.Start:], pos); err != nil {
			return 0, 0, fmt.Errorf("restore the tail of %s: %w", name, err)
		}
		pos = inc.End
	}
	if pos < wal.LongHeaderSize {
		log.Info("the tail of the segment is too short to hold its page header", "segment", name, "bytes", pos)
		return 0, 0, fmt.Errorf("%s: %w (its tail has %d bytes)", name, ErrNotFound, pos)
	}

	hb := make([]byte, wal.LongHeaderSize)
	if _, err := tmp.ReadAt(hb, 0); err != nil {
		return 0, 0, fmt.Errorf("restore the tail of %s: %w", name, err)
	}
	h, err := wal.ParseLongHeader(hb)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: tail of %s: %w", ErrBadWAL, name, err)
	}
	if err := h.Check(n, exp.SystemID, exp.SegmentSize); err != nil {
		return 0, 0, fmt.Errorf("%w: tail of %s: %w", ErrBadWAL, name, err)
	}
	size := int64(h.SegmentSize)
	pos = min(pos, size)
	if end, err := checkPages(tmp, h, pos); err != nil {
		return 0, 0, fmt.Errorf("restore the tail of %s: %w", name, err)
	} else if end < pos {
		log.Warn("the tail holds a page of another segment: it ends before it", "segment", name, "offset", end)
		pos = end
	}
	if err := previousWhole(ctx, st, n, size); err != nil {
		return 0, 0, err
	}

	// The rest reads as zeros: a page without a valid header, where
	// PostgreSQL's WAL reader sees the end of WAL.
	if err := tmp.Truncate(pos); err != nil {
		return 0, 0, fmt.Errorf("restore the tail of %s: %w", name, err)
	}
	if err := tmp.Truncate(size); err != nil {
		return 0, 0, fmt.Errorf("restore the tail of %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return 0, 0, fmt.Errorf("restore the tail of %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return 0, 0, fmt.Errorf("restore the tail of %s: %w", name, err)
	}
	tmp = nil
	return pos, size, nil
}

// readIncrement reads one increment whole and checks that it holds as many
// bytes as its name says.
func readIncrement(ctx context.Context, st archive.Storage, segment string, inc archive.Increment) ([]byte, error) {
	rc, err := st.Open(ctx, archive.TailDir(segment)+"/"+inc.Name)
	if err != nil {
		return nil, fmt.Errorf("open the tail of %s: %w", segment, err)
	}
	defer rc.Close()
	var r io.Reader = rc
	if strings.HasSuffix(inc.Name, archive.Zstd.Suffix()) {
		d, err := archive.Decompress(rc)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		r = d
	}
	want := inc.End - inc.Start
	data, err := io.ReadAll(io.LimitReader(r, want+1))
	if err != nil {
		return nil, fmt.Errorf("read the tail of %s: %w", segment, err)
	}
	if int64(len(data)) != want {
		return nil, fmt.Errorf("%w: %s holds %d bytes, its name says %d", archive.ErrCorrupt, inc.Name, len(data), want)
	}
	return data, nil
}

// checkPages returns where the pages of the prefix [0, end) of f stop
// carrying the page headers of the segment that h starts: every page whose
// header lies inside the prefix must have h's magic and its own address.
// Bytes the primary had not flushed, or a file recycled under the shipper,
// fail this check where nothing else would notice.
func checkPages(f *os.File, h wal.LongHeader, end int64) (int64, error) {
	page := int64(h.BlockSize)
	var ph [pageHeaderSize]byte
	for off := page; off+pageHeaderSize <= end; off += page {
		if _, err := f.ReadAt(ph[:], off); err != nil {
			return 0, err
		}
		magic := binary.LittleEndian.Uint16(ph[0:])
		info := binary.LittleEndian.Uint16(ph[2:])
		addr := wal.LSN(binary.LittleEndian.Uint64(ph[8:]))
		if magic != h.Magic || info&^wal.InfoAllFlags != 0 || info&wal.InfoLongHeader != 0 ||
			addr != h.PageAddr+wal.LSN(off) {
			return off, nil
		}
	}
	return end, nil
}

// previousWhole returns ErrNotFound when the segment before n was itself
// restored from a tail that did not reach its end. PostgreSQL does not ask
// for the next segment then, so this is a safety net: WAL after a gap must
// never be applied.
func previousWhole(ctx context.Context, st archive.Storage, n wal.Name, size int64) error {
	segno, err := n.SegNo(size)
	if err != nil || segno == 0 {
		return err
	}
	prev := wal.SegmentName(n.TLI, segno-1, size)
	_, _, err = archive.StatWAL(ctx, st, prev)
	if err == nil {
		return nil
	}
	if !archive.IsNotExist(err) {
		return err
	}
	incs, err := archive.ListIncrements(ctx, st, prev)
	if err != nil {
		return err
	}
	if len(incs) > 0 && archive.ContiguousEnd(incs) < size {
		return fmt.Errorf("%s: %w (the tail of %s before it ends at %d bytes)", n, ErrNotFound, prev, archive.ContiguousEnd(incs))
	}
	return nil
}
