package backup

import (
	"context"
	"fmt"
	"strconv"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// Usable reports whether backup m can recover onto timeline target, whose
// history file lists history (its ancestors, oldest first): the timeline
// the backup ends on must be target or one of its ancestors, and the backup
// must end before target's history leaves that timeline. Otherwise the
// server refuses to start ("requested timeline 2 is not a child of this
// server's history", or "does not contain minimum recovery point").
func Usable(m Meta, target wal.TimeLine, history []wal.HistoryEntry) bool {
	b := m.StopTimeline
	if b == target {
		return true
	}
	for _, e := range history {
		if e.TLI == b {
			return m.StopLSN <= e.Switch
		}
	}
	return false
}

// recoveryTimeline works out the timeline recovery will end on, as the
// server does for recovery_target_timeline: a number names it; "latest"
// (and "") is the newest timeline whose history file is archived, or that a
// backup is on; "current" is the backup's own, so it filters nothing and
// recoveryTimeline returns 0. It returns the target timeline's history.
func recoveryTimeline(ctx context.Context, st archive.Storage, setting string, backups []Meta) (wal.TimeLine, []wal.HistoryEntry, error) {
	var tli wal.TimeLine
	switch setting {
	case "current":
		return 0, nil, nil
	case "", "latest":
		files, _, err := archive.ListWAL(ctx, st)
		if err != nil {
			return 0, nil, fmt.Errorf("list the archive's timelines: %w", err)
		}
		tli = 1
		for _, fi := range files {
			if n, err := wal.ParseName(archive.TrimCompression(fi.Name)); err == nil && n.Kind == wal.History && n.TLI > tli {
				tli = n.TLI
			}
		}
		for _, m := range backups {
			tli = max(tli, m.StopTimeline)
		}
	default:
		n, err := strconv.ParseUint(setting, 10, 32)
		if err != nil || n == 0 {
			return 0, nil, fmt.Errorf("target timeline %q: use latest, current or a timeline number", setting)
		}
		tli = wal.TimeLine(n)
	}
	if tli == 1 {
		return 1, nil, nil
	}
	h, err := archive.ReadHistory(ctx, st, tli)
	if archive.IsNotExist(err) {
		// Only backups on the timeline itself can be checked.
		return tli, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	return tli, h, nil
}

// onTimeline returns the backups that can recover onto tli (0: all).
func onTimeline(backups []Meta, tli wal.TimeLine, history []wal.HistoryEntry) []Meta {
	if tli == 0 {
		return backups
	}
	var out []Meta
	for _, m := range backups {
		if Usable(m, tli, history) {
			out = append(out, m)
		}
	}
	return out
}
