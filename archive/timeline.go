package archive

import (
	"context"
	"fmt"
	"io"

	"github.com/walship/walship/wal"
)

// maxHistory bounds a history file read from the archive: a line per
// ancestor timeline, a few dozen bytes each.
const maxHistory = 1 << 20

// ReadHistory reads and parses the archived history file of timeline tli.
// A missing file returns an error matching fs.ErrNotExist.
func ReadHistory(ctx context.Context, st Storage, tli wal.TimeLine) ([]wal.HistoryEntry, error) {
	name := wal.HistoryName(tli)
	rc, _, err := OpenWAL(ctx, st, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxHistory))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	h, err := wal.ParseHistory(b)
	if err != nil {
		return nil, fmt.Errorf("the archived %s: %w", name, err)
	}
	return h, nil
}

// Fork says where a newer timeline left an older one.
type Fork struct {
	Child  wal.TimeLine // the newer timeline
	Parent wal.TimeLine // the timeline it left
	At     wal.LSN      // where it left it: Parent's WAL after At is not Child's
}

// ForkBefore looks for a newer timeline that left timeline tli at or before
// lsn: WAL of tli from lsn on was then written by a server that went on
// after another one took the timeline's place (a failed-over old primary,
// or the source of a point-in-time restore that archives here too). Like
// the server choosing a new timeline, it reads the history files of tli+1,
// tli+2, … up to the first one that is missing, so an archive without
// newer timelines costs one look-up. It returns the first such fork, and
// false when there is none.
func ForkBefore(ctx context.Context, st Storage, tli wal.TimeLine, lsn wal.LSN) (Fork, bool, error) {
	for child := tli + 1; child > tli; child++ {
		h, err := ReadHistory(ctx, st, child)
		if IsNotExist(err) {
			return Fork{}, false, nil
		}
		if err != nil {
			return Fork{}, false, err
		}
		for _, e := range h {
			if e.TLI == tli && e.Switch <= lsn {
				return Fork{Child: child, Parent: tli, At: e.Switch}, true, nil
			}
		}
	}
	return Fork{}, false, nil
}
