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

// A PendingState is what cleanup and expire take a backup without
// backup.json for.
type PendingState string

// The states of a backup without backup.json.
const (
	// Running: its newest in-progress marker is fresh. Its WAL, from the
	// marker's start_wal on, stays, and so do its files.
	Running PendingState = "running"
	// Starting: it has no marker yet, and its id (its start time) is less
	// than the staleness limit old: the server has not yet told it where it
	// starts, so no WAL may go. Its files stay.
	Starting PendingState = "starting"
	// Abandoned: its newest marker is older than the staleness limit. The
	// backup died without removing it; it protects no WAL, and expire
	// removes it.
	Abandoned PendingState = "abandoned"
	// Interrupted: no marker, and its id is older than the staleness limit:
	// it died before the server answered, or a walship without markers took
	// it. It protects no WAL; expire removes it once it is more than a day
	// old and older than the oldest backup kept.
	Interrupted PendingState = "interrupted"
)

// Pending is a backup without backup.json, as cleanup and expire judge it.
type Pending struct {
	ID    string       `json:"id"`
	State PendingState `json:"state"`
	// KeepsWAL says whether its WAL is kept (Running and Starting).
	KeepsWAL bool `json:"keeps_wal"`
	// Marker is its newest in-progress marker; nil without one.
	Marker *InProgress `json:"marker,omitempty"`
}

// Census is what backups/ holds, for cleanup and expire: the complete
// backups, oldest first, and every other one, judged.
type Census struct {
	Complete []Meta
	Pending  []Pending
}

// CensusOptions adjust ReadCensus.
type CensusOptions struct {
	// StaleAfter is how old a backup's newest in-progress marker may be
	// before the backup is taken for dead. Zero means DefaultStaleAfter.
	StaleAfter time.Duration
	Now        func() time.Time // the clock; tests replace it
	// Log gets a warning for every abandoned backup.
	Log *slog.Logger
}

// errCensusChanged says a backup completed, or renewed its marker, while
// the census read it.
var errCensusChanged = errors.New("backups changed while being read")

// ReadCensus lists the archive's backups and judges each one without
// backup.json by its newest in-progress marker (see PendingState). Any file
// it cannot read or parse is an error: the caller must then remove no WAL,
// since it cannot tell what a backup in progress needs.
func ReadCensus(ctx context.Context, st archive.Storage, opts CensusOptions) (Census, error) {
	stale := opts.StaleAfter
	if stale <= 0 {
		stale = DefaultStaleAfter
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var c Census
	var err error
	for try := 0; try < 5; try++ {
		if c, err = readCensus(ctx, st, now(), stale); !errors.Is(err, errCensusChanged) {
			break
		}
	}
	if err != nil {
		return Census{}, err
	}
	for _, p := range c.Pending {
		switch p.State {
		case Abandoned:
			log.Warn("a backup in progress has not renewed its marker: taken for dead, its WAL is no longer kept; "+
				"if it no longer runs, remove it (walship expire does)",
				"backup", p.ID, "heartbeat", p.Marker.Heartbeat, "host", p.Marker.Host, "pid", p.Marker.PID,
				"stale_after", stale, "path", archive.BackupsDir+"/"+p.ID+"/")
		case Interrupted:
			log.Debug("an interrupted backup protects no WAL", "backup", p.ID)
		}
	}
	return c, nil
}

func readCensus(ctx context.Context, st archive.Storage, now time.Time, stale time.Duration) (Census, error) {
	l, err := List(ctx, st)
	if err != nil {
		return Census{}, err
	}
	c := Census{Complete: l.Complete}
	for _, id := range l.Incomplete {
		p, err := judge(ctx, st, id, now, stale)
		if err != nil {
			return Census{}, err
		}
		c.Pending = append(c.Pending, p)
	}
	return c, nil
}

// judge reads the newest marker of the incomplete backup id.
func judge(ctx context.Context, st archive.Storage, id string, now time.Time, stale time.Duration) (Pending, error) {
	p := Pending{ID: id}
	files, err := st.List(ctx, archive.BackupsDir+"/"+id)
	if err != nil {
		return p, fmt.Errorf("list backup %s in progress: %w", id, err)
	}
	newest := newestMarker(files)
	if newest == "" {
		// Completed since List, perhaps: it removes its markers once its
		// backup.json is written.
		if _, err := st.Stat(ctx, metaPath(id)); err == nil {
			return p, errCensusChanged
		} else if !archive.IsNotExist(err) {
			return p, fmt.Errorf("backup %s: %w", id, err)
		}
		started, _ := time.Parse(idLayout, id)
		p.State = Interrupted
		if now.Sub(started) < stale {
			p.State, p.KeepsWAL = Starting, true
		}
		return p, nil
	}
	m, err := readMarker(ctx, st, id, newest)
	if archive.IsNotExist(err) {
		return p, errCensusChanged
	}
	if err != nil {
		return p, err
	}
	p.Marker = &m
	p.State = Abandoned
	if now.Sub(m.Heartbeat) < stale {
		p.State, p.KeepsWAL = Running, true
	}
	return p, nil
}

// Running returns the backups in progress whose WAL is kept: running or
// starting.
func (c Census) Running() []Pending {
	var r []Pending
	for _, p := range c.Pending {
		if p.KeepsWAL {
			r = append(r, p)
		}
	}
	return r
}

// KeepWAL returns the first segment that the complete backups complete and
// every running backup need: it and every later segment, on any timeline,
// must stay. It is "" when no backup needs WAL. all reports that a backup is
// starting, whose start is not known yet: then no WAL may go.
func (c Census) KeepWAL(complete []Meta) (from string, all bool) {
	var oldest wal.Name
	consider := func(seg string) {
		n, _ := wal.ParseName(seg) // checked by ReadMeta and readMarker
		if from == "" || n.Log < oldest.Log || (n.Log == oldest.Log && n.Seg < oldest.Seg) {
			from, oldest = seg, n
		}
	}
	for _, m := range complete {
		consider(wal.SegmentName(m.StartTimeline, wal.SegmentOf(m.StartLSN, m.SegmentSize), m.SegmentSize))
	}
	for _, p := range c.Pending {
		switch p.State {
		case Starting:
			all = true
		case Running:
			consider(p.Marker.StartWAL)
		}
	}
	return from, all
}
