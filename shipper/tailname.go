package shipper

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// The tail of a segment lives in the archive as immutable increments:
//
//	wal/<segment>.tail/<start>-<end>[.zst]
//
// start and end are byte offsets inside the segment, eight upper-case hex
// digits each, end exclusive: "00012000-00012A40.zst" holds bytes
// [0x12000, 0x12A40). An increment is zstd-compressed (one frame with its
// content checksum) or raw, as --compress says; readers take both. Since an
// increment never changes once it has its name, a reader that lists the
// directory and follows the ranges from offset 0 assembles a consistent
// prefix of the segment however the writer is interleaved with it.
//
// waiter/tail.go reads this format; the two are kept in step by a test
// there that assembles what Tail writes.

// TailDir returns the archive directory that holds the tail increments of
// the segment named segment.
func TailDir(segment string) string { return archive.WALDir + "/" + segment + ".tail" }

// tailName returns the name, inside its TailDir, of the increment holding
// bytes [start, end) of a segment.
func tailName(start, end int64, c archive.Compression) string {
	return fmt.Sprintf("%08X-%08X%s", start, end, c.Suffix())
}

// tailRange is one increment as its name describes it.
type tailRange struct {
	name       string
	start, end int64
}

// parseTailName parses an increment name. Names of other forms are not
// increments (ok false).
func parseTailName(name string) (r tailRange, ok bool) {
	base := strings.TrimSuffix(name, archive.Zstd.Suffix())
	if len(base) != 17 || base[8] != '-' {
		return tailRange{}, false
	}
	start, err1 := strconv.ParseUint(base[:8], 16, 32)
	end, err2 := strconv.ParseUint(base[9:], 16, 32)
	if err1 != nil || err2 != nil || strings.ToUpper(base) != base ||
		start >= end || end > wal.MaxSegmentSize {
		return tailRange{}, false
	}
	return tailRange{name: name, start: int64(start), end: int64(end)}, true
}

// listTail returns the increments of segment, sorted by start offset.
func listTail(ctx context.Context, st archive.Storage, segment string) ([]tailRange, error) {
	fis, err := st.List(ctx, TailDir(segment))
	if err != nil {
		return nil, err
	}
	rs := make([]tailRange, 0, len(fis))
	for _, fi := range fis {
		if r, ok := parseTailName(fi.Name); ok {
			rs = append(rs, r)
		}
	}
	slices.SortFunc(rs, func(a, b tailRange) int { return int(a.start - b.start) })
	return rs, nil
}

// contiguousEnd returns where the prefix that rs (sorted by start) cover
// from offset 0 without a gap ends.
func contiguousEnd(rs []tailRange) int64 {
	var end int64
	for _, r := range rs {
		if r.start > end {
			break
		}
		end = max(end, r.end)
	}
	return end
}

// RemoveTail removes the tail increments of segment, and their directory,
// once the segment is archived whole: a reader then takes the whole file.
// Increments another process writes meanwhile may survive; the tail daemon
// looks again after its last increment of a segment.
func RemoveTail(ctx context.Context, st archive.Storage, segment string) (int, error) {
	rs, err := listTail(ctx, st, segment)
	if err != nil || len(rs) == 0 {
		return 0, err
	}
	removed := 0
	for _, r := range rs {
		err := st.Remove(ctx, TailDir(segment)+"/"+r.name)
		if err != nil && !archive.IsNotExist(err) {
			return removed, fmt.Errorf("remove tail of %s: %w", segment, err)
		}
		removed++
	}
	// The empty directory goes too. One that gained an increment meanwhile
	// (or holds a temporary file of a killed Put) stays; that costs only a
	// name, so the error is not worth failing for.
	_ = st.Remove(ctx, TailDir(segment))
	return removed, nil
}

// removeTail is Push's cleanup after a segment or .partial file is archived
// whole. Its failure does not fail the push: the segment is safe, and the
// increments left behind only cost space.
func (p *Pusher) removeTail(ctx context.Context, name string) {
	n, err := wal.ParseName(name)
	if err != nil || (n.Kind != wal.Segment && n.Kind != wal.Partial) {
		return
	}
	removed, err := RemoveTail(ctx, p.Storage, n.SegmentName())
	switch {
	case err != nil && !errors.Is(err, ctx.Err()):
		p.logger().Warn("cannot remove the tail increments of an archived segment", "segment", n.SegmentName(),
			"err", err)
	case removed > 0:
		p.logger().Debug("removed tail increments", "segment", n.SegmentName(), "files", removed)
	}
}
