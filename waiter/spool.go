package waiter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// DefaultSpoolDir is where fetch keeps prefetched segments, relative to the
// data directory (restore_command runs there). The server ignores
// directories in pg_wal, and a base backup leaves pg_wal's contents out.
const DefaultSpoolDir = "pg_wal/walship-spool"

// Spool is a directory of prefetched segments, each verified as Fetch
// verifies, named as in the archive. An entry is served once: Take moves it
// to where the server wants it. Archived files never change, so a copy is
// as good as the original under the same name.
type Spool struct {
	Dir string
}

// Take moves the prefetched copy of name to dest, and reports whether there
// was one.
func (s *Spool) Take(name, dest string) (bool, error) {
	err := os.Rename(filepath.Join(s.Dir, name), dest)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Prune removes the segments older than name (by segment number, on any
// timeline: recovery does not go back) and leftovers of interrupted
// downloads.
func (s *Spool) Prune(name string, segSize int64) error {
	n, err := wal.ParseName(name)
	if err != nil || n.Kind != wal.Segment {
		return err
	}
	cur, err := n.SegNo(segSize)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			// The lock, and downloads in progress: Fill removes those
			// a killed prefetcher left.
			continue
		}
		en, err := wal.ParseName(e.Name())
		var seg wal.SegNo
		if err == nil {
			seg, err = en.SegNo(segSize)
		}
		if err != nil || seg < cur {
			os.Remove(filepath.Join(s.Dir, e.Name()))
		}
	}
	return nil
}

// Fill downloads the segments that follow name on its timeline, up to n of
// them, into the spool, stopping at the first one not archived yet. Only one
// Fill runs at a time per spool: when another holds the lock, Fill returns
// at once. It returns how many segments it downloaded.
func (s *Spool) Fill(ctx context.Context, st archive.Storage, exp Expect, name string, n int, segSize int64) (int, error) {
	cur, err := wal.ParseName(name)
	if err != nil {
		return 0, err
	}
	seg, err := cur.SegNo(segSize)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return 0, err
	}
	lock, err := os.OpenFile(filepath.Join(s.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return 0, err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return 0, nil
		}
		return 0, fmt.Errorf("lock %s: %w", s.Dir, err)
	}
	s.removeTemporary()
	got := 0
	for i := 1; i <= n; i++ {
		next := wal.SegmentName(cur.TLI, seg+wal.SegNo(i), segSize)
		dest := filepath.Join(s.Dir, next)
		if _, err := os.Stat(dest); err == nil {
			continue
		}
		if err := Restore(ctx, st, next, dest, exp); err != nil {
			if errors.Is(err, ErrNotFound) {
				return got, nil
			}
			return got, err
		}
		got++
	}
	return got, nil
}

// removeTemporary removes downloads that a killed prefetcher left; the
// caller holds the lock.
func (s *Spool) removeTemporary() {
	entries, _ := os.ReadDir(s.Dir)
	for _, e := range entries {
		// Restore's temporary files.
		if strings.HasPrefix(e.Name(), ".walship-restore-") {
			os.Remove(filepath.Join(s.Dir, e.Name()))
		}
	}
}
