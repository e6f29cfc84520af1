package waiter

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// CleanupOptions adjust Cleanup.
type CleanupOptions struct {
	// KeepFrom, a segment name, protects that segment and every later one
	// whatever the restart point.
	KeepFrom string
	// Backups, when set, says which WAL the archive's base backups need,
	// complete ones and those still running (walship cleanup reads it with
	// backup.ReadCensus). Cleanup asks just before it lists the WAL, and
	// removes nothing when Backups returns an error: it cannot tell what a
	// backup would lose.
	Backups func(ctx context.Context) (Keep, error)
	DryRun  bool // only report what would go
	Log     *slog.Logger
}

// Keep is the WAL that base backups need, whatever the restart point.
type Keep struct {
	// From names the first segment the oldest backup needs, complete or in
	// progress: it and every later segment stay. "" protects nothing.
	From string
	// All keeps every segment: a backup has started, and the server has not
	// yet told it where.
	All bool
}

// Cleanup removes the archived segments that a standby restarting at the
// segment restart (PostgreSQL's %r) no longer needs: those whose name,
// ignoring the timeline, sorts before restart's, as pg_archivecleanup does,
// and before opts.KeepFrom and what opts.Backups keeps. restart may also name
// a .partial or .backup file, which stands for its segment. Cleanup never
// removes .history, .backup or .partial files, and does nothing for an
// all-zero %r, which PostgreSQL passes until cleanup is safe. It returns the
// names of the files removed (or, in a dry run, that would be), as archived.
func Cleanup(ctx context.Context, st archive.Storage, restart string, opts CleanupOptions) ([]string, error) {
	r, err := CleanupPoint(restart)
	if err != nil {
		return nil, fmt.Errorf("cleanup: %%r: %w", err)
	}
	if r.Log == 0 && r.Seg == 0 {
		return nil, nil
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	keep := []string{opts.KeepFrom}
	if opts.Backups != nil {
		k, err := opts.Backups(ctx)
		if err != nil {
			return nil, fmt.Errorf("cleanup: cannot tell which WAL the archive's backups need, so nothing was removed: %w", err)
		}
		if k.All {
			log.Info("a backup is starting and its start position is not known yet: no WAL removed", "restart", restart)
			return nil, nil
		}
		keep = append(keep, k.From)
	}
	for _, from := range keep {
		if from == "" {
			continue
		}
		k, err := CleanupPoint(from)
		if err != nil {
			return nil, fmt.Errorf("cleanup: the WAL a backup needs: %w", err)
		}
		if before(k, r) {
			log.Debug("keeping the WAL a backup needs", "restart", restart, "keep_from", from)
			r = k
		}
	}
	var removed []string
	// wal/, then the root: a pg_standby archive's files, which the first
	// walship push leaves where cp put them.
	for _, dir := range []string{archive.WALDir, ""} {
		files, err := st.List(ctx, dir)
		if err != nil {
			return removed, fmt.Errorf("cleanup: %w", err)
		}
		for _, fi := range files {
			base, c := archive.CutCompression(fi.Name)
			compressed := c != archive.None
			n, err := wal.ParseName(base)
			if err != nil || n.Kind != wal.Segment || !before(n, r) || (dir == "" && compressed) {
				continue
			}
			if !opts.DryRun {
				if err := removeWAL(ctx, st, dir, fi.Name, !compressed); err != nil {
					return removed, fmt.Errorf("cleanup: %w", err)
				}
			}
			removed = append(removed, fi.Name)
			log.Debug("removed segment older than the restart point", "file", fi.Name, "restart", restart, "dry_run", opts.DryRun)
		}
	}
	return removed, nil
}

// removeWAL removes the archived file name in dir, and the checksum file of
// a raw one under wal/ after it (a checksum file left alone by a crash in
// between is harmless; a raw file left without its checksum would be
// verified record by record).
func removeWAL(ctx context.Context, st archive.Storage, dir, name string, raw bool) error {
	path := name
	if dir != "" {
		path = dir + "/" + name
	}
	if err := st.Remove(ctx, path); err != nil && !archive.IsNotExist(err) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	if raw && dir == archive.WALDir {
		if err := st.Remove(ctx, archive.ChecksumPath(name)); err != nil && !archive.IsNotExist(err) {
			return fmt.Errorf("remove %s: %w", archive.ChecksumPath(name), err)
		}
	}
	return nil
}

// CleanupPoint parses a restart point: the name of a segment, or of a
// .partial or .backup file, which stands for its segment.
func CleanupPoint(name string) (wal.Name, error) {
	n, err := wal.ParseName(name)
	if err != nil {
		return n, err
	}
	switch n.Kind {
	case wal.Segment, wal.Partial, wal.Backup:
		return n, nil
	}
	return n, fmt.Errorf("%s is not a segment name", name)
}

// before reports whether segment a comes before segment b, ignoring their
// timelines: recovery never goes back to an older segment number.
func before(a, b wal.Name) bool {
	return a.Log < b.Log || (a.Log == b.Log && a.Seg < b.Seg)
}
