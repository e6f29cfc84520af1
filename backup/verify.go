package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// Report is what Verify found.
type Report struct {
	WALFiles    int       `json:"wal_files"`
	BackupFiles int       `json:"backup_files"` // files in the backups' manifests
	Bytes       int64     `json:"bytes"`        // decompressed bytes read
	Problems    []Problem `json:"problems"`
	// TempFiles sums up the temporary files of writes in progress or
	// killed, which are no problem: nothing reads them, and cleanup and
	// expire remove the old ones. Nil when the backend cannot list them.
	TempFiles *TempSummary `json:"temp_files,omitempty"`
}

// Problem is one thing wrong with the archive.
type Problem struct {
	File    string `json:"file"` // archive name, or a segment name for missing WAL
	Problem string `json:"problem"`
}

// Verify reads every WAL file and every complete backup of the archive in
// full: each must decompress without checksum error; a segment must have its
// full size and the page header of the segment its name says, of the
// archive's cluster; a history file must parse; every file of a backup must
// match its manifest. It also checks that the WAL chain from each backup's
// start to the newest segment of its newest descendant timeline has no gap.
// Problems go into the report, and so does a summary of the temporary
// files; the error is for an archive that cannot be listed at all.
func Verify(ctx context.Context, st archive.Storage, prog Progress) (*Catalog, Report, error) {
	var r Report
	c, err := ReadCatalog(ctx, st)
	if err != nil {
		return nil, r, err
	}
	names := make([]string, 0, len(c.Files))
	for name := range c.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, r, err
		}
		n, err := checkWAL(ctx, st, name, c.Identity)
		r.Bytes += n
		r.WALFiles++
		if err != nil {
			r.Problems = append(r.Problems, Problem{File: archive.WALPath(name, ""), Problem: err.Error()})
		}
		report(prog, Status{Phase: "verify", Done: r.Bytes, Detail: name})
	}
	for _, m := range c.Backups {
		man, err := readManifest(ctx, st, m)
		if err != nil {
			r.Problems = append(r.Problems, Problem{File: Path(m.ID, m.Manifest), Problem: err.Error()})
			continue
		}
		if m.Incremental() {
			if _, err := resolveChain(c.Backups, m); err != nil {
				r.Problems = append(r.Problems, Problem{File: m.Dir(), Problem: err.Error()})
			}
		}
		r.BackupFiles += len(man.Files)
		n, err := checkBackup(ctx, st, m, man, prog)
		r.Bytes += n
		if err != nil {
			r.Problems = append(r.Problems, Problem{File: m.Dir(), Problem: err.Error()})
		}
		if _, missing := c.Chain(m); len(missing) > 0 {
			r.Problems = append(r.Problems, Problem{File: missing[0],
				Problem: fmt.Sprintf("missing: backup %s cannot recover past it (%d segments missing, up to %s)",
					m.ID, len(missing), missing[len(missing)-1])})
		}
	}
	r.Problems = append(r.Problems, timelineProblems(c)...)
	if r.TempFiles, err = ReadTemp(ctx, st, time.Now()); err != nil {
		return nil, r, err
	}
	return c, r, nil
}

// timelineProblems reports WAL archived after a newer timeline left its
// own, which two servers with diverged histories leave behind, and the
// backups that cannot recover onto the latest timeline: a restore to the
// latest timeline passes them over for older ones.
func timelineProblems(c *Catalog) []Problem {
	var ps []Problem
	for _, d := range c.Diverged {
		ps = append(ps, Problem{File: archive.WALPath(d.First, ""), Problem: fmt.Sprintf(
			"diverged: %d segments of timeline %d (%s to %s) were archived after timeline %d left it at %s: "+
				"two servers whose histories diverged archive here (a failed-over old primary, or the source "+
				"of a point-in-time restore); fence the one that should have stopped",
			d.Segments, d.Timeline, d.First, d.Last, d.Newer, d.At)})
	}
	latest := c.Latest()
	for _, m := range c.Backups {
		if slices.Contains(c.RecoversOnto[m.ID], latest) {
			continue
		}
		ps = append(ps, Problem{File: m.Dir(), Problem: fmt.Sprintf(
			"backup %s cannot recover onto the latest timeline %d, whose history does not pass through "+
				"where the backup ends (timeline %d at %s): a restore to the latest timeline passes it over; "+
				"it recovers onto timelines %v only",
			m.ID, latest, m.StopTimeline, m.StopLSN, c.RecoversOnto[m.ID])})
	}
	return ps
}

// checkWAL reads one archived WAL file in full.
func checkWAL(ctx context.Context, st archive.Storage, name string, id archive.Identity) (int64, error) {
	n, err := wal.ParseName(name)
	if err != nil {
		return 0, err
	}
	rc, _, err := archive.OpenWAL(ctx, st, name)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	switch n.Kind {
	case wal.Segment, wal.Partial:
		buf := make([]byte, wal.LongHeaderSize)
		if k, err := io.ReadFull(rc, buf); err != nil {
			return int64(k), fmt.Errorf("short segment: %w", err)
		}
		h, err := wal.ParseLongHeader(buf)
		if err == nil {
			err = h.Check(n, id.SystemID, id.SegmentSize)
		}
		if err != nil {
			return wal.LongHeaderSize, err
		}
		// A raw segment is checked record by record, as a restore checks
		// it before handing it over: a damaged record would be the end of
		// WAL to the server.
		var sink io.Writer = io.Discard
		var v *wal.SegmentVerifier
		if _, raw := rc.(*archive.RawReader); raw && n.Kind == wal.Segment {
			v = wal.NewSegmentVerifier(n, int64(h.SegmentSize))
			if _, err := v.Write(buf); err != nil {
				return wal.LongHeaderSize, err
			}
			sink = v
		}
		k, err := io.Copy(sink, rc)
		k += wal.LongHeaderSize
		if err != nil {
			return k, err
		}
		if k != id.SegmentSize {
			return k, fmt.Errorf("%d bytes, the segment size is %d", k, id.SegmentSize)
		}
		if v != nil {
			return k, v.Close()
		}
		return k, nil
	case wal.History:
		b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
		if err != nil {
			return int64(len(b)), err
		}
		_, err = wal.ParseHistory(b)
		return int64(len(b)), err
	}
	return io.Copy(io.Discard, rc)
}

// checkBackup reads every archive of backup m and checks it against man.
func checkBackup(ctx context.Context, st archive.Storage, m Meta, man *Manifest, prog Progress) (int64, error) {
	x := &extractor{man: man, seen: make(map[string]bool, len(man.Files)), prog: prog, total: m.Size,
		buf: make([]byte, 1<<20), dry: true, phase: "verify"}
	err := x.backup(ctx, st, m, nil)
	return x.done, err
}

// ErrProblems says Verify found problems.
var ErrProblems = errors.New("the archive has problems")
