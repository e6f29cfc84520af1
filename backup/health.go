package backup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// Health is what an operator watches of one archive: its newest and oldest
// backups, its newest WAL, and what verify would say about the chain (gaps,
// backups that cannot recover), from listings alone. A Tracker computes it;
// walship info --repo and walship exporter show it.
type Health struct {
	Identity archive.Identity `json:"identity"`
	// Backups counts the complete backups, Incomplete those that started
	// and have no backup.json (interrupted, or running now).
	Backups    int `json:"backups"`
	Incomplete int `json:"incomplete_backups"`
	// Newest and Oldest are the newest and the oldest complete backup; nil
	// when there is none.
	Newest *Meta `json:"newest_backup,omitempty"`
	Oldest *Meta `json:"oldest_backup,omitempty"`
	// WAL is the newest segment archived whole, on the newest timeline
	// that has one; nil when there is none.
	WAL *WALPoint `json:"newest_wal,omitempty"`
	// Timelines describes the WAL of each timeline, oldest first.
	Timelines []TimelineHealth `json:"timelines"`
	// Unusable lists the ids of the complete backups that cannot recover to
	// the end of the archive: a segment of their chain is missing, or they
	// cannot recover onto the latest timeline (walship verify says which).
	Unusable []string `json:"unusable_backups"`
	// Diverged counts the segments of timelines archived after a newer
	// timeline left them (Catalog.Diverged).
	Diverged int `json:"diverged_segments"`
	// Catalog is the listing the rest is computed from.
	Catalog *Catalog `json:"-"`
}

// WALPoint is where the archived WAL ends.
type WALPoint struct {
	Segment  string       `json:"segment"`
	Timeline wal.TimeLine `json:"timeline"`
	// End is the LSN where the newest segment ends: every byte of WAL of
	// its timeline before End is archived (gaps aside).
	End wal.LSN `json:"-"`
	// Archived is when the segment was stored, by the backend's clock
	// (its modification time).
	Archived time.Time `json:"archived"`
	// TailEnd is where the tail increments (walship tail) of the next
	// segment end, contiguous from its start; zero when it has none.
	TailEnd wal.LSN `json:"-"`
}

// Through returns the LSN up to which the archive holds the WAL of p's
// timeline: End, or TailEnd if the tail reaches further.
func (p WALPoint) Through() wal.LSN { return max(p.End, p.TailEnd) }

// TimelineHealth is the WAL of one timeline.
type TimelineHealth struct {
	Timeline wal.TimeLine `json:"timeline"`
	Segments int          `json:"segments"`
	Stored   int64        `json:"stored_size"`
	// Gaps counts the runs of missing segments between the first and the
	// last archived one, Missing the segments in them.
	Gaps    int `json:"gaps"`
	Missing int `json:"missing_segments"`
}

// A Tracker computes the Health of one archive again and again, as a
// daemon does, caching what never changes once written: the identity
// (walship.json), each backup.json and each history file, by name, size
// and modification time. Each Refresh lists wal/ and backups/ in full,
// since a removed segment (a gap) only shows in a full listing; it reads
// only the backup.json and .history files it has not seen, and one more
// directory: the tail of the segment after the newest. Its cost is one
// listing of wal/ (a readdir locally, one request per 1,000 names on S3)
// and memory for the names.
//
// A Tracker is not safe for concurrent use.
type Tracker struct {
	// Storage is the archive.
	Storage archive.Storage

	id      *archive.Identity
	metas   map[string]cachedMeta
	history map[wal.TimeLine]cachedHistory
}

type cachedMeta struct {
	size int64
	mod  time.Time
	m    Meta
}

type cachedHistory struct {
	size int64
	mod  time.Time
	h    []wal.HistoryEntry
}

// Refresh lists the archive and returns its Health.
func (t *Tracker) Refresh(ctx context.Context) (*Health, error) {
	st := t.Storage
	if t.id == nil {
		id, err := archive.ReadIdentityOrFlat(ctx, st)
		if err != nil {
			return nil, err
		}
		if _, err := st.Stat(ctx, archive.IdentityFile); err == nil {
			t.id = &id // walship.json is never replaced; a flat archive's first segment may go
		}
		return t.refresh(ctx, id)
	}
	return t.refresh(ctx, *t.id)
}

func (t *Tracker) refresh(ctx context.Context, id archive.Identity) (*Health, error) {
	st := t.Storage
	l, err := t.list(ctx)
	if err != nil {
		return nil, err
	}
	files, _, err := archive.ListWAL(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("list WAL: %w", err)
	}
	info := make(map[string]archive.FileInfo, 8)
	for _, fi := range files {
		if strings.HasSuffix(fi.Name, ".history") || strings.HasSuffix(fi.Name, ".history.zst") {
			info[strings.TrimSuffix(fi.Name, ".zst")] = fi
		}
	}
	if t.history == nil {
		t.history = map[wal.TimeLine]cachedHistory{}
	}
	seen := map[wal.TimeLine]bool{}
	c, err := buildCatalog(id, l, files, func(tli wal.TimeLine) ([]wal.HistoryEntry, error) {
		seen[tli] = true
		fi := info[wal.HistoryName(tli)]
		if ch, ok := t.history[tli]; ok && ch.size == fi.Size && ch.mod.Equal(fi.ModTime) {
			return ch.h, nil
		}
		h, err := archive.ReadHistory(ctx, st, tli)
		if err == nil {
			t.history[tli] = cachedHistory{size: fi.Size, mod: fi.ModTime, h: h}
		}
		return h, err
	})
	if err != nil {
		return nil, err
	}
	for tli := range t.history {
		if !seen[tli] {
			delete(t.history, tli)
		}
	}
	h := HealthOf(c)
	if h.WAL != nil {
		if err := tailEnd(ctx, st, h.WAL, id.SegmentSize); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// list is List, with each backup.json read once.
func (t *Tracker) list(ctx context.Context) (Listing, error) {
	files, err := t.Storage.List(ctx, archive.BackupsDir)
	if err != nil {
		return Listing{}, fmt.Errorf("list backups: %w", err)
	}
	if t.metas == nil {
		t.metas = map[string]cachedMeta{}
	}
	var l Listing
	complete := map[string]bool{}
	var started []string
	for _, fi := range files {
		switch {
		case strings.HasSuffix(fi.Name, metaSuffix) && ValidID(strings.TrimSuffix(fi.Name, metaSuffix)):
			id := strings.TrimSuffix(fi.Name, metaSuffix)
			cm, ok := t.metas[id]
			if !ok || cm.size != fi.Size || !cm.mod.Equal(fi.ModTime) {
				m, err := ReadMeta(ctx, t.Storage, id)
				if errors.Is(err, ErrNoBackup) {
					continue // expired since the listing
				}
				if err != nil {
					return Listing{}, err
				}
				cm = cachedMeta{size: fi.Size, mod: fi.ModTime, m: m}
				t.metas[id] = cm
			}
			l.Complete = append(l.Complete, cm.m)
			complete[id] = true
		case strings.HasSuffix(fi.Name, startedSuffix) && ValidID(strings.TrimSuffix(fi.Name, startedSuffix)):
			started = append(started, strings.TrimSuffix(fi.Name, startedSuffix))
		}
	}
	for id := range t.metas {
		if !complete[id] {
			delete(t.metas, id)
		}
	}
	for _, id := range started {
		if !complete[id] {
			l.Incomplete = append(l.Incomplete, id)
		}
	}
	sort.Slice(l.Complete, func(i, j int) bool { return l.Complete[i].ID < l.Complete[j].ID })
	return l, nil
}

// tailEnd sets p.TailEnd from the tail increments of the segment after p.
func tailEnd(ctx context.Context, st archive.Storage, p *WALPoint, size int64) error {
	next := wal.SegmentOf(p.End, size)
	incs, err := archive.ListIncrements(ctx, st, wal.SegmentName(p.Timeline, next, size))
	if err != nil {
		return fmt.Errorf("list tail increments: %w", err)
	}
	if end := archive.ContiguousEnd(incs); end > 0 {
		p.TailEnd = next.Start(size) + wal.LSN(end)
	}
	return nil
}

// HealthOf computes the Health of the archive that c lists, without the
// tail increments (WALPoint.TailEnd), which take a listing of their own.
func HealthOf(c *Catalog) *Health {
	size := c.Identity.SegmentSize
	h := &Health{Identity: c.Identity, Backups: len(c.Backups), Incomplete: len(c.Incomplete),
		Timelines: []TimelineHealth{}, Unusable: []string{}, Catalog: c}
	if n := len(c.Backups); n > 0 {
		newest, oldest := c.Backups[n-1], c.Backups[0]
		h.Newest, h.Oldest = &newest, &oldest
	}
	for _, t := range c.Timelines {
		th := TimelineHealth{Timeline: t.Timeline, Segments: t.Segments, Stored: t.Stored, Gaps: len(t.Gaps)}
		for _, g := range t.Gaps {
			first, err1 := segNo(g.First, size)
			last, err2 := segNo(g.Last, size)
			if err1 == nil && err2 == nil {
				th.Missing += int(last-first) + 1
			}
		}
		h.Timelines = append(h.Timelines, th)
		if len(t.segs) > 0 {
			last := t.segs[len(t.segs)-1]
			name := wal.SegmentName(t.Timeline, last, size)
			h.WAL = &WALPoint{Segment: name, Timeline: t.Timeline, End: (last + 1).Start(size),
				Archived: c.Files[name].ModTime}
		}
	}
	latest := c.Latest()
	for _, m := range c.Backups {
		if !c.chainComplete(m) || !slices.Contains(c.RecoversOnto[m.ID], latest) {
			h.Unusable = append(h.Unusable, m.ID)
		}
	}
	for _, d := range c.Diverged {
		h.Diverged += d.Segments
	}
	return h
}

func segNo(name string, size int64) (wal.SegNo, error) {
	n, err := wal.ParseName(name)
	if err != nil {
		return 0, err
	}
	return n.SegNo(size)
}

// VerifyWAL reads the archived WAL file name in full and checks it as
// walship verify does: checksums, the full segment size, the page header of
// the segment its name says, of the cluster id.
func VerifyWAL(ctx context.Context, st archive.Storage, name string, id archive.Identity) error {
	_, err := checkWAL(ctx, st, name, id)
	return err
}

// chainComplete reports whether Chain(m) finds no segment missing. It
// walks the same path, counting the archived segments of each range by
// binary search instead of looking up every name: a daemon asks this of
// every backup at every refresh, over ranges of up to the whole archive.
func (c *Catalog) chainComplete(m Meta) bool {
	size := c.Identity.SegmentSize
	segs := map[wal.TimeLine][]wal.SegNo{}
	for _, t := range c.Timelines {
		segs[t.Timeline] = t.segs
	}
	// all reports whether timeline t holds every segment from a to b.
	all := func(t wal.TimeLine, a, b wal.SegNo) bool {
		if a > b {
			return true
		}
		s := segs[t]
		i, _ := slices.BinarySearch(s, a)
		j, found := slices.BinarySearch(s, b)
		if found {
			j++
		}
		return wal.SegNo(j-i) == b-a+1
	}
	latest, path := c.latestDescendant(m.StopTimeline, m.StopLSN)
	from := wal.SegmentOf(m.StartLSN, size)
	for _, e := range path {
		if e.TLI < m.StartTimeline {
			continue
		}
		end := wal.SegmentOf(e.Switch, size)
		if from < end && !all(e.TLI, from, end-1) {
			return false
		}
		from = max(from, end)
	}
	last := wal.SegmentOf(m.StopLSN-1, size)
	if s := segs[latest]; len(s) > 0 {
		last = max(last, s[len(s)-1])
	}
	return all(latest, from, last)
}
