package waiter

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// Cleanup removes the archived segments that a standby restarting at the
// segment restart (PostgreSQL's %r) no longer needs: those whose name,
// ignoring the timeline, sorts before restart's. It never removes .history,
// .backup or .partial files, and does nothing for an all-zero %r, which
// PostgreSQL passes until cleanup is safe. It returns how many files it
// removed.
func Cleanup(ctx context.Context, st archive.Storage, restart string, log *slog.Logger) (int, error) {
	r, err := wal.ParseName(restart)
	if err != nil || r.Kind != wal.Segment {
		return 0, fmt.Errorf("cleanup: %%r must be a segment name: %w", err)
	}
	if r.Log == 0 && r.Seg == 0 {
		return 0, nil
	}
	files, err := st.List(ctx, archive.WALDir)
	if err != nil {
		return 0, fmt.Errorf("cleanup: %w", err)
	}
	removed := 0
	for _, fi := range files {
		base := strings.TrimSuffix(fi.Name, ".zst")
		n, err := wal.ParseName(base)
		if err != nil || n.Kind != wal.Segment {
			continue
		}
		if n.Log > r.Log || (n.Log == r.Log && n.Seg >= r.Seg) {
			continue
		}
		if err := st.Remove(ctx, archive.WALPath(fi.Name, "")); err != nil && !archive.IsNotExist(err) {
			return removed, fmt.Errorf("cleanup: remove %s: %w", fi.Name, err)
		}
		removed++
		if log != nil {
			log.Debug("removed segment older than the restart point", "file", fi.Name, "restart", restart)
		}
	}
	return removed, nil
}
