package waiter

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// CleanupOptions adjust Cleanup.
type CleanupOptions struct {
	// KeepFrom, a segment name, protects that segment and every later one
	// whatever the restart point: the WAL the oldest base backup in the
	// archive needs (walship expire removes it with the backup).
	KeepFrom string
	DryRun   bool // only report what would go
	Log      *slog.Logger
}

// Cleanup removes the archived segments that a standby restarting at the
// segment restart (PostgreSQL's %r) no longer needs: those whose name,
// ignoring the timeline, sorts before restart's, as pg_archivecleanup does,
// and before opts.KeepFrom. restart may also name a .partial or .backup file,
// which stands for its segment. Cleanup never removes .history, .backup or
// .partial files, and does nothing for an all-zero %r, which PostgreSQL
// passes until cleanup is safe. It returns the names of the files removed
// (or, in a dry run, that would be), as archived.
func Cleanup(ctx context.Context, st archive.Storage, restart string, opts CleanupOptions) ([]string, error) {
	r, err := CleanupPoint(restart)
	if err != nil {
		return nil, fmt.Errorf("cleanup: %%r: %w", err)
	}
	if r.Log == 0 && r.Seg == 0 {
		return nil, nil
	}
	if opts.KeepFrom != "" {
		k, err := CleanupPoint(opts.KeepFrom)
		if err != nil {
			return nil, fmt.Errorf("cleanup: the oldest backup's WAL: %w", err)
		}
		if before(k, r) {
			if opts.Log != nil {
				opts.Log.Debug("keeping the WAL the oldest backup needs", "restart", restart, "keep_from", opts.KeepFrom)
			}
			r = k
		}
	}
	files, err := st.List(ctx, archive.WALDir)
	if err != nil {
		return nil, fmt.Errorf("cleanup: %w", err)
	}
	var removed []string
	for _, fi := range files {
		n, err := wal.ParseName(strings.TrimSuffix(fi.Name, ".zst"))
		if err != nil || n.Kind != wal.Segment || !before(n, r) {
			continue
		}
		if !opts.DryRun {
			if err := st.Remove(ctx, archive.WALPath(fi.Name, "")); err != nil && !archive.IsNotExist(err) {
				return removed, fmt.Errorf("cleanup: remove %s: %w", fi.Name, err)
			}
		}
		removed = append(removed, fi.Name)
		if opts.Log != nil {
			opts.Log.Debug("removed segment older than the restart point", "file", fi.Name, "restart", restart, "dry_run", opts.DryRun)
		}
	}
	return removed, nil
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
