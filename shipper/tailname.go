package shipper

import (
	"context"
	"errors"
	"fmt"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// TailDir returns the archive directory that holds the tail increments of
// the segment named segment (the format is described in archive/tail.go).
func TailDir(segment string) string { return archive.TailDir(segment) }

// RemoveTail removes the tail increments of segment, and their directory,
// once the segment is archived whole: a reader then takes the whole file.
// Increments another process writes meanwhile may survive; the tail daemon
// looks again after its last increment of a segment.
func RemoveTail(ctx context.Context, st archive.Storage, segment string) (int, error) {
	rs, err := archive.ListIncrements(ctx, st, segment)
	if err != nil || len(rs) == 0 {
		return 0, err
	}
	removed := 0
	for _, r := range rs {
		err := st.Remove(ctx, TailDir(segment)+"/"+r.Name)
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
