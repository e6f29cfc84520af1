package waiter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// DefaultSpoolDir is where fetch keeps prefetched segments, relative to the
// data directory (restore_command runs there). The server ignores
// directories in pg_wal, and a base backup leaves pg_wal's contents out.
// It is on pg_wal's file system, so a prefetched segment is handed over by
// a rename.
const DefaultSpoolDir = "pg_wal/walship-spool"

// fillPrefix names a spool file that is verified but not yet on disk: Fill
// writes each segment under this prefix, fsyncs it, and only then gives it
// its name, so that a named entry is whole even after a power loss.
const fillPrefix = ".fill-"

// Spool is a directory of prefetched segments, each verified as Fetch
// verifies and written to disk, named as in the archive. An entry is served
// once: Take moves it to where the server wants it. Archived files never
// change, so a copy is as good as the original under the same name.
//
// Its size is bounded: with one Fill at a time (the lock) and Prune run at
// each served segment, it holds at most n segments (Fill's and Prune's n)
// and one being downloaded, n+1 segment sizes on disk. Fill writes each
// segment back to disk while it downloads the next, and downloads no
// further until that is done, so at most two segments of the spool's page
// cache are dirty at any time; the rest is clean cache the kernel may drop.
//
// Why write back at all: PostgreSQL fsyncs every file restore_command
// returns (durable_rename in KeepFileRestoredFromArchive), on the startup
// process, before it replays a record of it. A file the prefetcher has
// fsynced already costs that fsync nothing.
type Spool struct {
	Dir string

	syncFile func(path string) error // how writeBack syncs; nil: fsync (tests replace it)
}

// Take moves the prefetched copy of name to dest, and reports whether there
// was one. It checks the entry's size and page header against exp first, so
// that a file that does not belong (another cluster's, a truncated one) is
// never handed over; such an entry is removed and Take returns an error.
func (s *Spool) Take(name, dest string, exp Expect) (bool, error) {
	size, err := s.TakeSegment(name, dest, exp)
	return size != 0, err
}

// TakeSegment is Take, returning the segment size of the copy it moved, 0
// when there was none. With an Expect that names the cluster but not its
// segment size (a standby's pg_control read alone), the copy's own page
// header gives it.
func (s *Spool) TakeSegment(name, dest string, exp Expect) (int64, error) {
	n, err := wal.ParseName(name)
	if err != nil || n.Kind != wal.Segment {
		return 0, err
	}
	path := filepath.Join(s.Dir, name)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	size, err := checkSpooled(f, n, exp)
	f.Close()
	if err != nil {
		os.Remove(path)
		return 0, fmt.Errorf("spooled %s: %w", name, err)
	}
	err = os.Rename(path, dest)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return 0, nil // taken by a concurrent fetch of the same file
	case err != nil:
		return 0, err
	}
	return size, nil
}

// checkSpooled checks what a spool entry cannot have lost since Fill
// verified it without walship noticing: its size and its page header. It
// returns the segment size.
func checkSpooled(f *os.File, n wal.Name, exp Expect) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	buf := make([]byte, wal.LongHeaderSize)
	if _, err := io.ReadFull(f, buf); err != nil {
		return 0, err
	}
	h, err := wal.ParseLongHeader(buf)
	if err != nil {
		return 0, err
	}
	if err := h.Check(n, exp.SystemID, exp.SegmentSize); err != nil {
		return 0, err
	}
	if fi.Size() != int64(h.SegmentSize) {
		return 0, fmt.Errorf("%d bytes, the segment size is %d", fi.Size(), h.SegmentSize)
	}
	return int64(h.SegmentSize), nil
}

// Prune removes the entries recovery will not ask for after name: older
// segments (by segment number: recovery does not go back), segments of
// another timeline (the server asks for one timeline's segments in turn;
// after a switch the old timeline's are of no use), segments more than n
// after name (a spool filled with a larger n), and leftovers of interrupted
// downloads.
func (s *Spool) Prune(name string, n int, segSize int64) error {
	nm, err := wal.ParseName(name)
	if err != nil || nm.Kind != wal.Segment {
		return err
	}
	cur, err := nm.SegNo(segSize)
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
		if err == nil && en.Kind == wal.Segment {
			seg, err = en.SegNo(segSize)
		} else if err == nil {
			err = errors.New("not a segment")
		}
		if err != nil || seg < cur || seg > cur+wal.SegNo(n) || en.TLI != nm.TLI {
			os.Remove(filepath.Join(s.Dir, e.Name()))
		}
	}
	return nil
}

// Fill downloads the segments that follow name on its timeline, up to n of
// them, into the spool, stopping at the first one not archived yet. Each is
// verified by Restore and written to disk before it gets its name. Only one
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

	// A segment is written back to disk and named on a goroutine of its
	// own while the next one downloads: the fsync waits on the disk, the
	// download on the archive and the CPU. Names are given in order, each
	// only once its file is on disk.
	type verified struct{ tmp, dest, name string }
	queue := make(chan verified) // unbuffered: one written back, one waiting, at most
	var (
		got    int
		wbErr  error
		failed = make(chan struct{}) // closed with wbErr: download no more
		wg     sync.WaitGroup
	)
	wg.Go(func() {
		for v := range queue {
			if wbErr != nil {
				os.Remove(v.tmp)
				continue
			}
			err := s.writeBack(v.tmp)
			if err != nil {
				err = fmt.Errorf("write %s back to disk: %w", v.name, err)
			} else {
				err = os.Rename(v.tmp, v.dest)
			}
			if err != nil {
				os.Remove(v.tmp)
				wbErr = err
				close(failed)
				continue
			}
			got++
		}
	})
	err = nil // the first error of a download; wbErr is the writer's
fill:
	for i := 1; i <= n; i++ {
		select {
		case <-failed:
			break fill
		default:
		}
		next := wal.SegmentName(cur.TLI, seg+wal.SegNo(i), segSize)
		dest := filepath.Join(s.Dir, next)
		if _, serr := os.Stat(dest); serr == nil {
			continue
		}
		tmp := filepath.Join(s.Dir, fillPrefix+next)
		if err = Restore(ctx, st, next, tmp, exp); err != nil {
			if errors.Is(err, ErrNotFound) {
				err = nil
			}
			break
		}
		select {
		case queue <- verified{tmp: tmp, dest: dest, name: next}:
		case <-failed:
			os.Remove(tmp)
			break fill
		}
	}
	close(queue)
	wg.Wait()
	if err == nil {
		err = wbErr
	}
	return got, err
}

// Filling reports whether a Fill runs now (holds the lock), so that a
// prefetcher started while another works does not open the archive (on
// SFTP, a login) only to find the lock taken. A Fill may still start just
// after it answered false; Fill's own lock then decides.
func (s *Spool) Filling() bool {
	lock, err := os.Open(filepath.Join(s.Dir, ".lock"))
	if err != nil {
		return false
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	return false
}

// writeBack fsyncs the file at path, so that the server's own fsync of it
// finds nothing to write, and so that it survives a power loss once named.
func (s *Spool) writeBack(path string) error {
	if s.syncFile != nil {
		return s.syncFile(path)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeTemporary removes downloads that a killed prefetcher left; the
// caller holds the lock.
func (s *Spool) removeTemporary() {
	entries, _ := os.ReadDir(s.Dir)
	for _, e := range entries {
		// Restore's temporary files, and verified files not yet synced.
		if strings.HasPrefix(e.Name(), ".walship-restore-") || strings.HasPrefix(e.Name(), fillPrefix) {
			os.Remove(filepath.Join(s.Dir, e.Name()))
		}
	}
}
