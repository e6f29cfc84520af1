package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// interruptedAge is how old a backup without backup.json and without an
// in-progress marker must be before Expire removes it: a walship from
// before the markers may still be taking it.
const interruptedAge = 24 * time.Hour

// ExpireOptions adjust Expire.
type ExpireOptions struct {
	Keep   int  // how many complete backups to keep, at least 1
	DryRun bool // only report what would go
	// StaleAfter is how old a backup's in-progress marker may get before
	// the backup is taken for dead (CensusOptions.StaleAfter).
	StaleAfter time.Duration
	Now        func() time.Time // the clock; tests replace it
	Log        *slog.Logger
}

// Expired is what Expire removed, or would remove in a dry run.
type Expired struct {
	Backups []string `json:"backups"` // complete backups
	// Incomplete lists the backups without backup.json removed: abandoned
	// ones, and interrupted ones (see PendingState).
	Incomplete []string `json:"incomplete"`
	WAL        []string `json:"wal"` // WAL files (names as archived)
	Stored     int64    `json:"stored_size"`
	// OldestKept is the oldest complete backup kept.
	OldestKept string `json:"oldest_kept"`
	// InProgress lists the backups in progress (running or starting) that
	// were kept, and whose WAL was.
	InProgress []Pending `json:"in_progress"`
	// KeptFrom names the first segment kept, for the oldest kept backup or
	// a backup in progress that started before it; KeptAll says that no
	// WAL was removed because a backup is starting and its start position
	// is not known yet.
	KeptFrom string `json:"kept_from,omitempty"`
	KeptAll  bool   `json:"kept_all,omitempty"`
}

// Expire keeps the newest opts.Keep complete backups, and every backup an
// incremental one among them builds on, and removes the other ones, the backups in progress that died (abandoned, or interrupted more
// than a day ago before the oldest kept backup started; see PendingState),
// and every segment, .partial and .backup file older than the segment that
// the oldest kept backup, or the oldest backup in progress, starts in, on
// any timeline: recovery never reads backwards. While a backup is starting
// it removes no WAL. History files stay: they are small, and a missing one
// would let a new timeline reuse a number. With DryRun it removes nothing.
// If it cannot read what a backup in progress needs, it removes nothing.
//
// A backup's backup.json goes first, so a backup that could not be removed
// completely is listed as incomplete, never restored from.
func Expire(ctx context.Context, st archive.Storage, opts ExpireOptions) (Expired, error) {
	var ex Expired
	if opts.Keep < 1 {
		return ex, errors.New("expire must keep at least one backup")
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	id, err := archive.ReadIdentity(ctx, st)
	if err != nil {
		return ex, err
	}
	c, err := ReadCensus(ctx, st, CensusOptions{StaleAfter: opts.StaleAfter, Now: now, Log: log})
	if err != nil {
		return ex, fmt.Errorf("expire: cannot tell what the archive's backups need, so nothing was removed: %w", err)
	}
	if len(c.Complete) == 0 {
		return ex, fmt.Errorf("%w in %s: expire removes nothing without one to keep", ErrNoBackup, st)
	}
	kept, gone := keepWithParents(c.Complete, opts.Keep)
	oldest := kept[0]
	ex.OldestKept = oldest.ID
	ex.InProgress = c.Running()
	from, all := c.KeepWAL(kept)
	ex.KeptFrom, ex.KeptAll = from, all
	remove := func(name string, size int64) error {
		if opts.DryRun {
			ex.Stored += size
			return nil
		}
		if err := st.Remove(ctx, name); err != nil && !archive.IsNotExist(err) {
			return fmt.Errorf("expire: remove %s: %w", name, err)
		}
		ex.Stored += size
		return nil
	}

	for _, m := range gone {
		if err := remove(metaPath(m.ID), 0); err != nil {
			return ex, err
		}
		if err := removeDir(ctx, st, m.ID, remove); err != nil {
			return ex, err
		}
		ex.Backups = append(ex.Backups, m.ID)
		log.Info("expired backup", "backup", m.ID, "dry_run", opts.DryRun)
	}
	for _, p := range c.Pending {
		switch p.State {
		case Running, Starting:
			log.Info("kept a backup in progress and its WAL", "backup", p.ID, "state", p.State)
			continue
		case Interrupted:
			started, _ := time.Parse(idLayout, p.ID)
			if p.ID >= oldest.ID || now().Sub(started) < interruptedAge {
				continue // an older walship may be taking it still
			}
		}
		if err := removeDir(ctx, st, p.ID, remove); err != nil {
			return ex, err
		}
		ex.Incomplete = append(ex.Incomplete, p.ID)
		log.Info("removed a backup that did not complete", "backup", p.ID, "state", p.State, "dry_run", opts.DryRun)
	}

	if all {
		log.Info("a backup is starting and its start position is not known yet: no WAL removed")
		return ex, nil
	}
	k, err := wal.ParseName(from)
	if err != nil {
		return ex, fmt.Errorf("expire: %w", err)
	}
	first, err := k.SegNo(id.SegmentSize)
	if err != nil {
		return ex, fmt.Errorf("expire: %w", err)
	}
	files, err := st.List(ctx, archive.WALDir)
	if err != nil {
		return ex, fmt.Errorf("expire: list WAL: %w", err)
	}
	for _, fi := range files {
		n, err := wal.ParseName(archive.TrimCompression(fi.Name))
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
		if archive.CompressionOf(fi.Name) == archive.None {
			if err := remove(archive.ChecksumPath(fi.Name), 0); err != nil {
				return ex, err
			}
		}
		ex.WAL = append(ex.WAL, fi.Name)
	}
	if len(ex.WAL) > 0 {
		log.Info("expired WAL older than the oldest kept backup", "files", len(ex.WAL), "before", from, "dry_run", opts.DryRun)
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

// keepWithParents splits complete (oldest first) into the backups expire
// keeps, oldest first: the newest keep ones and every backup an
// incremental one among them builds on, however far back its chain goes;
// and the others, which it removes.
func keepWithParents(complete []Meta, keep int) (kept, gone []Meta) {
	byID := make(map[string]Meta, len(complete))
	for _, m := range complete {
		byID[m.ID] = m
	}
	keepID := map[string]bool{}
	for _, m := range complete[max(0, len(complete)-keep):] {
		for cur, ok := m, true; ok && !keepID[cur.ID]; cur, ok = byID[cur.Parent] {
			keepID[cur.ID] = true
		}
	}
	for _, m := range complete {
		if keepID[m.ID] {
			kept = append(kept, m)
		} else {
			gone = append(gone, m)
		}
	}
	return kept, gone
}
