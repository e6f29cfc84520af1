package archive

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The tail of a segment not yet archived whole lives in the archive as
// immutable increments written by walship tail:
//
//	wal/<segment>.tail/<start>-<end>[.zst]
//
// start and end are byte offsets inside the segment, eight upper-case hex
// digits each, end exclusive: "00012000-00012A40.zst" holds bytes
// [0x12000, 0x12A40). An increment is zstd-compressed (with its content
// checksum) or raw. Since an increment never changes once it has its name, a
// reader that lists the directory and follows the ranges from offset 0
// assembles a consistent prefix of the segment, however the writer is
// interleaved with it.

// maxTailOffset bounds increment offsets: the largest segment size.
const maxTailOffset = 1 << 30

// TailDir returns the archive directory that holds the tail increments of
// the segment named segment.
func TailDir(segment string) string { return WALDir + "/" + segment + ".tail" }

// Increment is one tail increment as its name describes it.
type Increment struct {
	Name       string // file name inside TailDir
	Start, End int64  // byte range inside the segment, End exclusive
}

// IncrementName returns the name, inside its TailDir, of the increment
// holding bytes [start, end) of a segment stored with c.
func IncrementName(start, end int64, c Compression) string {
	return fmt.Sprintf("%08X-%08X%s", start, end, c.Suffix())
}

// ParseIncrement parses an increment name. Names of other forms are not
// increments (ok false).
func ParseIncrement(name string) (inc Increment, ok bool) {
	base := strings.TrimSuffix(name, Zstd.Suffix())
	if len(base) != 17 || base[8] != '-' || strings.ToUpper(base) != base {
		return Increment{}, false
	}
	start, err1 := strconv.ParseUint(base[:8], 16, 32)
	end, err2 := strconv.ParseUint(base[9:], 16, 32)
	if err1 != nil || err2 != nil || start >= end || end > maxTailOffset {
		return Increment{}, false
	}
	return Increment{Name: name, Start: int64(start), End: int64(end)}, true
}

// ListIncrements returns the increments of segment, sorted by start.
func ListIncrements(ctx context.Context, st Storage, segment string) ([]Increment, error) {
	fis, err := st.List(ctx, TailDir(segment))
	if err != nil {
		return nil, err
	}
	incs := make([]Increment, 0, len(fis))
	for _, fi := range fis {
		if inc, ok := ParseIncrement(fi.Name); ok {
			incs = append(incs, inc)
		}
	}
	slices.SortFunc(incs, func(a, b Increment) int { return int(a.Start - b.Start) })
	return incs, nil
}

// ContiguousEnd returns where the prefix that incs (sorted by start) cover
// from offset 0 without a gap ends.
func ContiguousEnd(incs []Increment) int64 {
	var end int64
	for _, inc := range incs {
		if inc.Start > end {
			break
		}
		end = max(end, inc.End)
	}
	return end
}
