package shipper

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// PostgreSQL's archiver calls archive_command for one file at a time, and
// waits for it: after an outage of the archive, the backlog drains at one
// push per call, one after the other, however many cores and however much
// bandwidth there are. A look-ahead push also ships, concurrently with the
// file it was called for, the next segments PostgreSQL has marked ready
// for archiving (pg_wal/archive_status/<name>.ready), and returns once all
// of them are done. Each one it ships is marked on the file itself, once
// durable in the archive (shipped.go): when PostgreSQL then calls for it,
// the push finds the mark, checks that the file is still the one shipped
// (name, size, inode, modification time, XXH64), and answers at once,
// without opening the archive (on SFTP, without the login that is most of
// a call). A file without a valid mark is compared with the archived copy
// by checksum, as any re-push is.

// LookAhead says how a push ships the segments ready after its own.
type LookAhead struct {
	// Max is how many ready segments a push ships besides its own; 0
	// turns look-ahead off.
	Max int
	// Jobs is how many files are pushed at once (at least 1).
	Jobs int
}

// ReadySegments returns the names of the whole segments in the
// archive_status directory beside the WAL file path (pg_wal/X:
// pg_wal/archive_status) that PostgreSQL has marked ready for archiving,
// other than skip, oldest first, at most max. A directory that cannot be
// read has none: look-ahead is an optimisation, never a reason to fail.
func ReadySegments(path, skip string, max int) []string {
	if max <= 0 {
		return nil
	}
	entries, err := os.ReadDir(filepath.Join(filepath.Dir(path), "archive_status"))
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".ready")
		if !ok || name == skip {
			continue
		}
		if n, err := wal.ParseName(name); err != nil || n.Kind != wal.Segment {
			continue // .history, .backup and .partial files go in their own calls
		}
		names = append(names, name)
	}
	slices.Sort(names) // timeline, then segment: the order PostgreSQL archives them in
	if len(names) > max {
		names = names[:max]
	}
	return names
}

// PushAhead pushes the file at path as Push does, and with it, la.Jobs at
// a time, up to la.Max of the segments ReadySegments finds ready after it
// that the archive does not hold yet, and returns once they are all done,
// with the result of the push of name alone: a segment shipped ahead that
// fails is logged and left for its own call, which will report it. When
// the push of name fails, the others are stopped: the archive is likely
// unwritable, and PostgreSQL will call again.
//
// A ready segment the archive holds already was shipped ahead by an earlier
// call, and PostgreSQL's own call for it compares it (or it conflicts, and
// that call says so): it is skipped here, not compared, and the window
// reaches past it, so that each call of a drain keeps la.Jobs pushes busy
// rather than shipping the one segment its predecessor left.
func (p *Pusher) PushAhead(ctx context.Context, path, name string, la LookAhead) error {
	n, err := wal.ParseName(name)
	if err != nil || n.Kind != wal.Segment || la.Max <= 0 {
		return p.Push(ctx, path, name)
	}
	// Those shipped by earlier calls come first: look at twice the window.
	candidates := ReadySegments(path, name, 2*la.Max)
	if len(candidates) == 0 {
		return p.Push(ctx, path, name)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slots := make(chan struct{}, max(la.Jobs, 1))
	var wg sync.WaitGroup
	var own error
	slots <- struct{}{} // the file PostgreSQL asked for goes first
	wg.Go(func() {
		defer func() { <-slots }()
		if own = p.Push(ctx, path, name); own != nil {
			cancel()
		}
	})
	dir := filepath.Dir(path)
	for _, a := range p.notArchived(ctx, candidates, la.Max) {
		select {
		case slots <- struct{}{}: // in order: the oldest first
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-slots }()
			err := p.pushFile(ctx, filepath.Join(dir, a), a, true)
			switch {
			case err == nil:
				p.logger().Debug("shipped ahead", "file", a, "for", name)
			case errors.Is(err, context.Canceled):
			default:
				p.logger().Warn("cannot ship a ready segment ahead; its own push will try again", "file", a, "err", err)
			}
		})
	}
	wg.Wait()
	return own
}

// notArchived returns, in order, the first max of names that the archive
// does not hold, asking for all of them at once (on a remote archive each
// is a round trip). A name it cannot tell about is left to its own call.
func (p *Pusher) notArchived(ctx context.Context, names []string, max int) []string {
	missing := make([]bool, len(names))
	var wg sync.WaitGroup
	for i, a := range names {
		wg.Go(func() {
			_, _, err := archive.StatWAL(ctx, p.Storage, a)
			missing[i] = archive.IsNotExist(err)
		})
	}
	wg.Wait()
	var out []string
	for i, a := range names {
		if missing[i] && len(out) < max {
			out = append(out, a)
		}
	}
	return out
}
