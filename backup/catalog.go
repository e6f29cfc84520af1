package backup

import (
	"context"
	"fmt"
	"sort"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// Catalog is what an archive holds: its backups and its WAL, by timeline.
type Catalog struct {
	Identity   archive.Identity `json:"identity"`
	Backups    []Meta           `json:"backups"`    // complete, oldest first
	Incomplete []string         `json:"incomplete"` // ids of backups without backup.json
	Timelines  []TimelineWAL    `json:"timelines"`
	// RecoversOnto lists, by backup id, the timelines known to the archive
	// that the backup can recover onto (see Usable): after a fork, a backup
	// of the old primary taken since cannot recover onto the new timeline.
	RecoversOnto map[string][]wal.TimeLine `json:"recovers_onto"`
	// Diverged lists the timelines that have WAL archived after a newer
	// timeline left them: two servers whose histories diverged (a
	// failed-over old primary, the source of a point-in-time restore)
	// have both archived here.
	Diverged []Divergence `json:"diverged,omitempty"`
	// History holds the parsed history file of each timeline that has one.
	History map[wal.TimeLine][]wal.HistoryEntry `json:"-"`
	// Files are the WAL files, by name without compression suffix.
	Files map[string]archive.FileInfo `json:"-"`
}

// TimelineWAL describes the segments archived on one timeline.
type TimelineWAL struct {
	Timeline wal.TimeLine `json:"timeline"`
	First    string       `json:"first"`
	Last     string       `json:"last"`
	Segments int          `json:"segments"`
	Stored   int64        `json:"stored_size"`
	History  bool         `json:"history"` // its .history file is archived
	// Gaps lists the missing segments between First and Last.
	Gaps []Gap `json:"gaps,omitempty"`

	segs []wal.SegNo
}

// Gap is a run of missing segments, First to Last inclusive.
type Gap struct {
	First string `json:"first"`
	Last  string `json:"last"`
}

// ReadCatalog lists the archive: wal/ and, for a pg_standby archive, the WAL
// files at its root. The archive needs its identity for the segment size:
// walship.json (the first push records it) or, in a pg_standby archive, the
// page header of its first segment.
func ReadCatalog(ctx context.Context, st archive.Storage) (*Catalog, error) {
	id, err := archive.ReadIdentityOrFlat(ctx, st)
	if err != nil {
		return nil, err
	}
	l, err := List(ctx, st)
	if err != nil {
		return nil, err
	}
	files, _, err := archive.ListWAL(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("list WAL: %w", err)
	}
	return buildCatalog(id, l, files, func(tli wal.TimeLine) ([]wal.HistoryEntry, error) {
		return archive.ReadHistory(ctx, st, tli)
	})
}

// buildCatalog makes the Catalog of an archive of identity id from its
// backups l and its WAL files (as archive.ListWAL lists them), reading the
// history files it finds with readHistory. A Tracker calls it with what it
// cached.
func buildCatalog(id archive.Identity, l Listing, files []archive.FileInfo,
	readHistory func(wal.TimeLine) ([]wal.HistoryEntry, error)) (*Catalog, error) {
	c := &Catalog{Identity: id, Backups: l.Complete, Incomplete: l.Incomplete,
		History: map[wal.TimeLine][]wal.HistoryEntry{}, Files: make(map[string]archive.FileInfo, len(files))}
	tls := map[wal.TimeLine]*TimelineWAL{}
	tl := func(t wal.TimeLine) *TimelineWAL {
		if tls[t] == nil {
			tls[t] = &TimelineWAL{Timeline: t}
		}
		return tls[t]
	}
	for _, fi := range files {
		base := archive.TrimCompression(fi.Name)
		n, err := wal.ParseName(base)
		if err != nil {
			continue
		}
		c.Files[base] = fi
		switch n.Kind {
		case wal.Segment:
			seg, err := n.SegNo(id.SegmentSize)
			if err != nil {
				continue
			}
			t := tl(n.TLI)
			t.segs = append(t.segs, seg)
			t.Stored += fi.Size
		case wal.History:
			tl(n.TLI).History = true
			h, err := readHistory(n.TLI)
			if err != nil {
				return nil, err
			}
			c.History[n.TLI] = h
		}
	}
	for _, t := range tls {
		sort.Slice(t.segs, func(i, j int) bool { return t.segs[i] < t.segs[j] })
		t.Segments = len(t.segs)
		if len(t.segs) > 0 {
			t.First = wal.SegmentName(t.Timeline, t.segs[0], id.SegmentSize)
			t.Last = wal.SegmentName(t.Timeline, t.segs[len(t.segs)-1], id.SegmentSize)
		}
		for i := 1; i < len(t.segs); i++ {
			if t.segs[i] > t.segs[i-1]+1 {
				t.Gaps = append(t.Gaps, Gap{
					First: wal.SegmentName(t.Timeline, t.segs[i-1]+1, id.SegmentSize),
					Last:  wal.SegmentName(t.Timeline, t.segs[i]-1, id.SegmentSize),
				})
			}
		}
		c.Timelines = append(c.Timelines, *t)
	}
	sort.Slice(c.Timelines, func(i, j int) bool { return c.Timelines[i].Timeline < c.Timelines[j].Timeline })
	c.RecoversOnto = recoversOnto(c)
	c.Diverged = diverged(c, tls)
	return c, nil
}

// Divergence is WAL of a timeline archived after a newer one left it.
type Divergence struct {
	Timeline wal.TimeLine `json:"timeline"`
	Newer    wal.TimeLine `json:"newer_timeline"` // the first timeline to leave it
	At       wal.LSN      `json:"fork_lsn"`       // where Newer left it
	First    string       `json:"first"`          // the first segment wholly after At
	Last     string       `json:"last"`
	Segments int          `json:"segments"`
}

// diverged works out Catalog.Diverged: for each timeline, the segments
// that begin at or after the earliest point where a newer timeline left it.
func diverged(c *Catalog, tls map[wal.TimeLine]*TimelineWAL) []Divergence {
	var out []Divergence
	for _, t := range c.Timelines {
		d := Divergence{Timeline: t.Timeline}
		for child, h := range c.History {
			for _, e := range h {
				if e.TLI == t.Timeline && (d.Newer == 0 || e.Switch < d.At || e.Switch == d.At && child < d.Newer) {
					d.Newer, d.At = child, e.Switch
				}
			}
		}
		if d.Newer == 0 {
			continue
		}
		for _, seg := range tls[t.Timeline].segs {
			if seg.Start(c.Identity.SegmentSize) < d.At {
				continue
			}
			if d.Segments == 0 {
				d.First = wal.SegmentName(t.Timeline, seg, c.Identity.SegmentSize)
			}
			d.Last = wal.SegmentName(t.Timeline, seg, c.Identity.SegmentSize)
			d.Segments++
		}
		if d.Segments > 0 {
			out = append(out, d)
		}
	}
	return out
}

// Latest is the newest timeline the archive knows of: the one a restore to
// recovery_target_timeline 'latest' ends on.
func (c *Catalog) Latest() wal.TimeLine {
	latest := wal.TimeLine(1)
	for _, t := range c.Timelines {
		latest = max(latest, t.Timeline)
	}
	for t := range c.History {
		latest = max(latest, t)
	}
	for _, m := range c.Backups {
		latest = max(latest, m.StopTimeline)
	}
	return latest
}

// recoversOnto works out Catalog.RecoversOnto.
func recoversOnto(c *Catalog) map[string][]wal.TimeLine {
	known := map[wal.TimeLine]bool{1: true}
	for _, t := range c.Timelines {
		known[t.Timeline] = true
	}
	for t := range c.History {
		known[t] = true
	}
	for _, m := range c.Backups {
		known[m.StopTimeline] = true
	}
	tlis := make([]wal.TimeLine, 0, len(known))
	for t := range known {
		tlis = append(tlis, t)
	}
	sort.Slice(tlis, func(i, j int) bool { return tlis[i] < tlis[j] })
	out := map[string][]wal.TimeLine{}
	for _, m := range c.Backups {
		list := []wal.TimeLine{}
		for _, t := range tlis {
			if Usable(m, t, c.History[t]) {
				list = append(list, t)
			}
		}
		out[m.ID] = list
	}
	return out
}

// Chain returns the segments that recovery from backup m to the end of the
// archive reads, following timeline switches to the newest timeline that
// descends from the backup's (as recovery_target_timeline = 'latest' does),
// and the ones among them that are missing. The chain ends at the newest
// archived segment of that timeline, or at the backup's stop segment if
// that is later.
func (c *Catalog) Chain(m Meta) (need int, missing []string) {
	size := c.Identity.SegmentSize
	latest, path := c.latestDescendant(m.StopTimeline, m.StopLSN)
	from := wal.SegmentOf(m.StartLSN, size)
	has := func(t wal.TimeLine, s wal.SegNo) bool {
		_, ok := c.Files[wal.SegmentName(t, s, size)]
		return ok
	}
	check := func(t wal.TimeLine, s wal.SegNo) {
		need++
		if !has(t, s) {
			missing = append(missing, wal.SegmentName(t, s, size))
		}
	}
	for _, e := range path {
		if e.TLI < m.StartTimeline {
			continue // before the backup
		}
		// Timeline e.TLI ends at e.Switch; its child holds the segment
		// that contains the switch.
		end := wal.SegmentOf(e.Switch, size)
		for s := from; s < end; s++ {
			check(e.TLI, s)
		}
		from = max(from, end)
	}
	last := wal.SegmentOf(m.StopLSN-1, size)
	for _, t := range c.Timelines {
		if t.Timeline == latest && len(t.segs) > 0 {
			last = max(last, t.segs[len(t.segs)-1])
		}
	}
	for s := from; s <= last; s++ {
		check(latest, s)
	}
	return need, missing
}

// latestDescendant returns the newest timeline that left tli after the LSN
// after, or tli itself, and the history entries (switch points) that lead
// there.
func (c *Catalog) latestDescendant(tli wal.TimeLine, after wal.LSN) (wal.TimeLine, []wal.HistoryEntry) {
	best, path := tli, c.History[tli]
	for t, h := range c.History {
		if t <= best {
			continue
		}
		for _, e := range h {
			if e.TLI == tli && e.Switch >= after {
				best, path = t, h
				break
			}
		}
	}
	return best, path
}
