package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// runningAge is how old an incomplete backup must be before Expire takes it
// for interrupted rather than running: a long backup may have started
// before a short one that completed.
const runningAge = 24 * time.Hour

// Expired is what Expire removed, or would remove in a dry run.
type Expired struct {
	Backups    []string `json:"backups"`    // complete backups
	Incomplete []string `json:"incomplete"` // interrupted backups
	WAL        []string `json:"wal"`        // WAL files (names as archived)
	Stored     int64    `json:"stored_size"`
	// OldestKept is the backup from whose start on WAL is kept.
	OldestKept string `json:"oldest_kept"`
}

// Expire keeps the newest keep complete backups and removes the older ones,
// interrupted backups that started before the oldest kept one and more than
// a day ago, and every
// segment, .partial and .backup file older than the segment the oldest
// kept backup starts in, on any timeline: recovery never reads backwards.
// History files stay: they are small, and a missing one would let a new
// timeline reuse a number. With dryRun it removes nothing.
//
// A backup's backup.json goes first, so a backup that could not be removed
// completely is listed as incomplete, never restored from.
func Expire(ctx context.Context, st archive.Storage, keep int, dryRun bool, log *slog.Logger) (Expired, error) {
	var ex Expired
	if keep < 1 {
		return ex, errors.New("expire must keep at least one backup")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	id, err := archive.ReadIdentity(ctx, st)
	if err != nil {
		return ex, err
	}
	l, err := List(ctx, st)
	if err != nil {
		return ex, err
	}
	if len(l.Complete) == 0 {
		return ex, fmt.Errorf("%w in %s: expire removes nothing without one to keep", ErrNoBackup, st)
	}
	cut := max(0, len(l.Complete)-keep)
	oldest := l.Complete[cut]
	ex.OldestKept = oldest.ID
	remove := func(name string, size int64) error {
		if dryRun {
			ex.Stored += size
			return nil
		}
		if err := st.Remove(ctx, name); err != nil && !archive.IsNotExist(err) {
			return fmt.Errorf("expire: remove %s: %w", name, err)
		}
		ex.Stored += size
		return nil
	}

	for _, m := range l.Complete[:cut] {
		if err := remove(metaPath(m.ID), 0); err != nil {
			return ex, err
		}
		if err := removeDir(ctx, st, m.ID, remove); err != nil {
			return ex, err
		}
		ex.Backups = append(ex.Backups, m.ID)
		log.Info("expired backup", "backup", m.ID)
	}
	for _, inc := range l.Incomplete {
		started, _ := time.Parse(idLayout, inc)
		if inc >= oldest.ID || time.Since(started) < runningAge {
			continue // may be running still
		}
		if err := removeDir(ctx, st, inc, remove); err != nil {
			return ex, err
		}
		ex.Incomplete = append(ex.Incomplete, inc)
		log.Info("removed interrupted backup", "backup", inc)
	}

	first := wal.SegmentOf(oldest.StartLSN, id.SegmentSize)
	files, err := st.List(ctx, archive.WALDir)
	if err != nil {
		return ex, fmt.Errorf("expire: list WAL: %w", err)
	}
	for _, fi := range files {
		n, err := wal.ParseName(strings.TrimSuffix(fi.Name, ".zst"))
		if err != nil || n.Kind == wal.History {
			continue
		}
		seg, err := n.SegNo(id.SegmentSize)
		if err != nil || seg >= first {
			continue
		}
		if err := remove(archive.WALDir+"/"+fi.Name, fi.Size); err != nil {
			return ex, err
		}
		ex.WAL = append(ex.WAL, fi.Name)
	}
	if len(ex.WAL) > 0 {
		log.Info("expired WAL older than the oldest kept backup", "files", len(ex.WAL), "before", wal.SegmentName(oldest.StartTimeline, first, id.SegmentSize))
	}
	return ex, nil
}

// removeDir removes the files of a backup's directory, the directory where
// the backend can, and its start marker.
func removeDir(ctx context.Context, st archive.Storage, id string, remove func(string, int64) error) error {
	files, err := st.List(ctx, archive.BackupsDir+"/"+id)
	if err != nil {
		return fmt.Errorf("expire: list backup %s: %w", id, err)
	}
	for _, fi := range files {
		if err := remove(Path(id, fi.Name), fi.Size); err != nil {
			return err
		}
	}
	_ = remove(archive.BackupsDir+"/"+id, 0) // the empty directory: local backends only
	return remove(startedPath(id), 0)
}
