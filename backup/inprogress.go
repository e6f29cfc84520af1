package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// Defaults of the in-progress marker.
const (
	// DefaultHeartbeat is how often a running backup renews its marker.
	DefaultHeartbeat = time.Minute
	// DefaultStaleAfter is how old the newest marker of a backup may get
	// before cleanup and expire take the backup for dead: 120 missed
	// heartbeats. Too long only keeps a dead backup's WAL for longer; too
	// short lets cleanup remove the WAL of a backup that is only slow to
	// reach the archive, and that backup then fails.
	DefaultStaleAfter = 2 * time.Hour
)

// InProgressFormat is the version of the in-progress marker's layout. A
// reader refuses a later one.
const InProgressFormat = 1

// InProgress is the marker of a backup in progress,
// backups/<id>/inprogress-<n>.json. Backup writes the first as soon as the
// server has told it where the backup starts, and a new one, with n one
// higher, every heartbeat (Put never replaces a file), removing the older
// ones; readers take the one with the highest n. The markers go when the
// backup completes (after backup.json is written) or fails.
type InProgress struct {
	Format        int          `json:"format"`
	ID            string       `json:"id"`
	Label         string       `json:"label"`
	StartLSN      wal.LSN      `json:"-"`
	StartTimeline wal.TimeLine `json:"start_timeline"`
	// StartWAL names the segment holding StartLSN: it and every later one
	// must stay in the archive for the backup to complete.
	StartWAL  string    `json:"start_wal"`
	StartTime time.Time `json:"start_time"`
	// Heartbeat is when this marker was written, by the backup host's clock.
	Heartbeat time.Time `json:"heartbeat"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
}

type inProgressAlias InProgress

type inProgressJSON struct {
	*inProgressAlias
	StartLSN string `json:"start_lsn"`
}

// MarshalJSON writes the start LSN as PostgreSQL prints it.
func (m InProgress) MarshalJSON() ([]byte, error) {
	a := inProgressAlias(m)
	return json.Marshal(inProgressJSON{inProgressAlias: &a, StartLSN: m.StartLSN.String()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (m *InProgress) UnmarshalJSON(b []byte) error {
	j := inProgressJSON{inProgressAlias: (*inProgressAlias)(m)}
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	var err error
	if m.StartLSN, err = wal.ParseLSN(j.StartLSN); err != nil {
		return fmt.Errorf("start_lsn: %w", err)
	}
	return nil
}

// markerName matches the in-progress markers in a backup's directory.
var markerName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^inprogress-([0-9]{6,9})\.json$`) })

func markerFile(seq int) string { return fmt.Sprintf("inprogress-%06d.json", seq) }

// newestMarker returns the name of the newest marker among files, "" if
// there is none.
func newestMarker(files []archive.FileInfo) string {
	best, name := -1, ""
	for _, fi := range files {
		if m := markerName().FindStringSubmatch(fi.Name); m != nil {
			if n, _ := strconv.Atoi(m[1]); n > best {
				best, name = n, fi.Name
			}
		}
	}
	return name
}

// readMarker reads marker file of backup id. A missing file matches
// fs.ErrNotExist: a newer heartbeat replaced it, or the backup ended.
func readMarker(ctx context.Context, st archive.Storage, id, file string) (InProgress, error) {
	var m InProgress
	rc, err := st.Open(ctx, Path(id, file))
	if err != nil {
		return m, fmt.Errorf("read %s: %w", Path(id, file), err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<10))
	if err != nil {
		return m, fmt.Errorf("read %s: %w", Path(id, file), err)
	}
	damaged := func(why string) error {
		return fmt.Errorf("backup %s in progress: %s is damaged (%s): remove it if no backup %s runs", id, Path(id, file), why, id)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, damaged(err.Error())
	}
	if m.Format > InProgressFormat {
		return m, fmt.Errorf("backup %s in progress: %s has format %d, this walship reads up to %d: upgrade walship",
			id, Path(id, file), m.Format, InProgressFormat)
	}
	if m.ID != id {
		return m, damaged("wrong id")
	}
	if n, err := wal.ParseName(m.StartWAL); err != nil || n.Kind != wal.Segment {
		return m, damaged("bad start_wal")
	}
	if m.Heartbeat.IsZero() {
		return m, damaged("no heartbeat")
	}
	return m, nil
}

// heartbeat keeps the in-progress marker of a running backup fresh.
type heartbeat struct {
	st    archive.Storage
	log   *slog.Logger
	now   func() time.Time
	every time.Duration

	mu      sync.Mutex
	marker  InProgress
	seq     int
	written []string  // markers stored and not yet removed
	last    time.Time // the Heartbeat of the newest marker stored

	stopOnce sync.Once
	stopc    chan struct{}
	done     chan struct{}
}

// startHeartbeat stores the first marker of a backup in progress, then
// renews it every interval until stop. Without a marker nothing protects
// the backup's WAL, so a failure to store the first is an error.
func startHeartbeat(ctx context.Context, st archive.Storage, m InProgress, every time.Duration,
	now func() time.Time, log *slog.Logger) (*heartbeat, error) {
	m.Format = InProgressFormat
	h := &heartbeat{st: st, log: log, now: now, every: every, marker: m,
		stopc: make(chan struct{}), done: make(chan struct{})}
	if err := h.beat(ctx); err != nil {
		return nil, fmt.Errorf("record the backup in progress: %w", err)
	}
	go h.run(ctx)
	return h, nil
}

func (h *heartbeat) run(ctx context.Context) {
	defer close(h.done)
	t := time.NewTicker(h.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.stopc:
			return
		case <-t.C:
			if err := h.beat(ctx); err != nil && ctx.Err() == nil {
				h.log.Warn("cannot renew the marker of the backup in progress; retrying at the next heartbeat",
					"last", h.lastBeat(), "err", err)
			}
		}
	}
}

// beat stores the next marker, then removes the older ones. A marker whose
// removal fails stays until the next beat or the end: readers take the
// newest anyway.
func (h *heartbeat) beat(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	m := h.marker
	m.Heartbeat = h.now().UTC()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	file := markerFile(h.seq)
	if err := h.st.Put(ctx, Path(m.ID, file), bytes.NewReader(append(b, '\n'))); err != nil {
		return err
	}
	h.last = m.Heartbeat
	old := h.written
	h.written = []string{file}
	for _, f := range old {
		if err := h.st.Remove(ctx, Path(m.ID, f)); err != nil && !archive.IsNotExist(err) {
			h.written = append(h.written, f)
		}
	}
	return nil
}

func (h *heartbeat) lastBeat() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// stop ends the heartbeats; the markers stay. It may be called more than
// once.
func (h *heartbeat) stop() {
	h.stopOnce.Do(func() { close(h.stopc) })
	<-h.done
}

// files returns the markers stored and not removed, as names in the
// backup's directory.
func (h *heartbeat) files() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.written...)
}

// remove stops the heartbeats and removes every marker.
func (h *heartbeat) remove(ctx context.Context) error {
	h.stop()
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	left := h.written[:0]
	for _, f := range h.written {
		if err := h.st.Remove(ctx, Path(h.marker.ID, f)); err != nil && !archive.IsNotExist(err) {
			errs = append(errs, err)
			left = append(left, f)
		}
	}
	h.written = left
	return errors.Join(errs...)
}

// check returns an error when the newest marker stored is staleAfter old:
// from then on cleanup and expire take the backup for dead, and may have
// removed its WAL or its files.
func (h *heartbeat) check(staleAfter time.Duration) error {
	last := h.lastBeat()
	if age := h.now().Sub(last); age >= staleAfter {
		return fmt.Errorf("the marker of this backup in progress was last renewed %v ago (at %s), and after %v cleanup and expire take a backup for dead "+
			"and may have removed its WAL or files: check that the archive accepts writes, and take the backup again",
			age.Round(time.Second), last.Format(time.RFC3339), staleAfter)
	}
	return nil
}
