package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// testNow is the clock of these tests; ids are relative to it.
var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return testNow }

// idAt is the id of a backup started d before testNow.
func idAt(d time.Duration) string { return testNow.Add(-d).Format(idLayout) }

// putMarker records backup id as in progress from segment start, with
// marker number seq renewed at heartbeat.
func putMarker(t *testing.T, st archive.Storage, id string, seq int, start wal.SegNo, heartbeat time.Time) InProgress {
	t.Helper()
	if _, err := st.Stat(context.Background(), startedPath(id)); archive.IsNotExist(err) {
		putFile(t, st, startedPath(id), "{}")
	}
	m := InProgress{Format: InProgressFormat, ID: id, StartLSN: start.Start(testSegSize) + 0x28, StartTimeline: 1,
		StartWAL: wal.SegmentName(1, start, testSegSize), Heartbeat: heartbeat, Host: "db1", PID: 4242}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	putFile(t, st, Path(id, markerFile(seq)), string(b))
	return m
}

// faulty fails List or Open of the names in fail.
type faulty struct {
	archive.Storage
	mu   sync.Mutex
	fail map[string]error
}

func (f *faulty) err(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail[name]
}

func (f *faulty) List(ctx context.Context, dir string) ([]archive.FileInfo, error) {
	if err := f.err(dir); err != nil {
		return nil, err
	}
	return f.Storage.List(ctx, dir)
}

func (f *faulty) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := f.err(name); err != nil {
		return nil, err
	}
	return f.Storage.Open(ctx, name)
}

// The first marker is stored at once, every heartbeat stores the next and
// removes the one before, and remove leaves none.
func TestHeartbeat(t *testing.T) {
	ctx := context.Background()
	st := testArchive(t)
	var mu sync.Mutex
	clock := testNow
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	}
	id := idAt(time.Minute)
	h, err := startHeartbeat(ctx, st, InProgress{ID: id, StartLSN: 0x3000028, StartTimeline: 1,
		StartWAL: "000000010000000000000003", Host: "db1", PID: 7}, 10*time.Millisecond, now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	first, err := readMarker(ctx, st, id, markerFile(1))
	if err != nil {
		t.Fatalf("the first marker: %v", err)
	}
	if first.Format != InProgressFormat || first.StartLSN != 0x3000028 || first.StartWAL != "000000010000000000000003" || first.PID != 7 {
		t.Errorf("first marker %+v", first)
	}

	deadline := time.Now().Add(10 * time.Second)
	var files []archive.FileInfo
	for {
		files, err = st.List(ctx, "backups/"+id)
		if err != nil {
			t.Fatal(err)
		}
		if n := newestMarker(files); n != "" && n >= markerFile(3) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no third heartbeat after 10s: %v", files)
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.stop()
	files, _ = st.List(ctx, "backups/"+id)
	if len(files) != 1 || len(h.files()) != 1 || files[0].Name != h.files()[0] {
		t.Errorf("after heartbeats the directory holds %v, want only the newest marker %v", files, h.files())
	}
	last, err := readMarker(ctx, st, id, files[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	if !last.Heartbeat.After(first.Heartbeat) || last.StartWAL != first.StartWAL {
		t.Errorf("newest marker %+v, want the first's start and a later heartbeat than %s", last, first.Heartbeat)
	}

	if err := h.check(time.Hour); err != nil {
		t.Errorf("check right after a heartbeat: %v", err)
	}
	mu.Lock()
	clock = clock.Add(2 * time.Hour)
	mu.Unlock()
	if err := h.check(time.Hour); err == nil {
		t.Errorf("check two hours after the last heartbeat: no error")
	}

	if err := h.remove(ctx); err != nil {
		t.Fatal(err)
	}
	if files, _ := st.List(ctx, "backups/"+id); len(files) != 0 {
		t.Errorf("after remove: %v", files)
	}
}

// A heartbeat whose marker cannot be stored is retried at the next one.
func TestHeartbeatRetries(t *testing.T) {
	ctx := context.Background()
	st := &putFails{Storage: testArchive(t)}
	var logs bytes.Buffer
	id := idAt(time.Minute)
	h, err := startHeartbeat(ctx, st, InProgress{ID: id, StartWAL: "000000010000000000000003"}, 10*time.Millisecond,
		time.Now, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	st.failing.Store(true)
	time.Sleep(50 * time.Millisecond)
	st.failing.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for h.lastBeat().Before(time.Now().Add(-20 * time.Millisecond)) {
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat once the archive accepts writes again")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := h.remove(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "cannot renew the marker") {
		t.Errorf("no warning for the failed heartbeats:\n%s", logs.String())
	}
	if files, _ := st.List(ctx, "backups/"+id); len(files) != 0 {
		t.Errorf("after remove: %v", files)
	}

	st.failing.Store(true)
	if _, err := startHeartbeat(ctx, st, InProgress{ID: idAt(0), StartWAL: "000000010000000000000003"}, time.Hour,
		time.Now, slog.New(slog.DiscardHandler)); err == nil {
		t.Errorf("startHeartbeat with an archive refusing writes: no error")
	}
}

type putFails struct {
	archive.Storage
	failing atomic.Bool
}

func (p *putFails) Put(ctx context.Context, name string, r io.Reader) error {
	if p.failing.Load() {
		return errors.New("disk full")
	}
	return p.Storage.Put(ctx, name, r)
}

// ReadCensus judges each backup without backup.json by its newest marker,
// and KeepWAL keeps the WAL of the oldest backup, complete or running.
func TestCensus(t *testing.T) {
	ctx := context.Background()
	running, starting, abandoned, interrupted := idAt(3*time.Hour), idAt(time.Minute), idAt(5*time.Hour), idAt(3*time.Hour+time.Second)
	for _, tc := range []struct {
		name     string
		setup    func(t *testing.T, st archive.Storage)
		states   string
		from     string
		all      bool
		warnings int
	}{
		{name: "no backup", setup: func(*testing.T, archive.Storage) {}, states: "[]"},
		{name: "a first backup running", setup: func(t *testing.T, st archive.Storage) {
			putMarker(t, st, running, 1, 4, testNow.Add(-time.Minute))
			putMarker(t, st, running, 7, 4, testNow.Add(-10*time.Second)) // a removal that failed: the newest counts
		}, states: "[running]", from: "000000010000000000000004"},
		{name: "running, and an older complete backup", setup: func(t *testing.T, st archive.Storage) {
			putBackup(t, st, idAt(10*time.Hour), 1, 2, 2)
			putMarker(t, st, running, 1, 4, testNow.Add(-time.Minute))
		}, states: "[running]", from: "000000010000000000000002"},
		{name: "running since before the complete backup", setup: func(t *testing.T, st archive.Storage) {
			putMarker(t, st, running, 1, 3, testNow.Add(-time.Minute))
			putBackup(t, st, idAt(time.Hour), 1, 5, 6)
		}, states: "[running]", from: "000000010000000000000003"},
		{name: "starting", setup: func(t *testing.T, st archive.Storage) {
			putBackup(t, st, idAt(time.Hour), 1, 5, 6)
			putFile(t, st, startedPath(starting), "{}")
		}, states: "[starting]", from: "000000010000000000000005", all: true},
		{name: "abandoned and interrupted", setup: func(t *testing.T, st archive.Storage) {
			putMarker(t, st, abandoned, 3, 2, testNow.Add(-2*time.Hour-time.Second))
			putFile(t, st, startedPath(interrupted), "{}")
			putFile(t, st, Path(interrupted, "base.tar.zst"), "half")
			putBackup(t, st, idAt(time.Hour), 1, 5, 6)
		}, states: "[abandoned interrupted]", from: "000000010000000000000005", warnings: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := testArchive(t)
			tc.setup(t, st)
			var logs bytes.Buffer
			c, err := ReadCensus(ctx, st, CensusOptions{Now: fixedNow, Log: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			var states []PendingState
			for _, p := range c.Pending {
				states = append(states, p.State)
				if p.KeepsWAL != (p.State == Running || p.State == Starting) {
					t.Errorf("%s: keeps_wal %t", p.State, p.KeepsWAL)
				}
			}
			if got := fmt.Sprint(states); got != tc.states {
				t.Errorf("states %s, want %s", got, tc.states)
			}
			from, all := c.KeepWAL(c.Complete)
			if from != tc.from || all != tc.all {
				t.Errorf("KeepWAL: %q, all %t; want %q, all %t", from, all, tc.from, tc.all)
			}
			if got := strings.Count(logs.String(), "level=WARN"); got != tc.warnings {
				t.Errorf("%d warnings, want %d:\n%s", got, tc.warnings, logs.String())
			}
			if tc.warnings > 0 && !strings.Contains(logs.String(), "backup="+abandoned) {
				t.Errorf("the warning does not name backup %s:\n%s", abandoned, logs.String())
			}
		})
	}

	// A shorter limit takes the running backup for dead.
	st := testArchive(t)
	putMarker(t, st, running, 1, 4, testNow.Add(-10*time.Minute))
	c, err := ReadCensus(ctx, st, CensusOptions{Now: fixedNow, StaleAfter: 5 * time.Minute})
	if err != nil || len(c.Pending) != 1 || c.Pending[0].State != Abandoned {
		t.Errorf("with StaleAfter 5m, a marker 10m old: %+v, %v; want abandoned", c.Pending, err)
	}
}

// A marker that cannot be read or parsed is an error, never a backup that
// needs nothing.
func TestCensusUnreadable(t *testing.T) {
	ctx := context.Background()
	id := idAt(time.Hour)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, st *faulty)
	}{
		{"damaged", func(t *testing.T, st *faulty) { putFile(t, st, Path(id, markerFile(2)), "{damaged") }},
		{"a later format", func(t *testing.T, st *faulty) {
			putFile(t, st, Path(id, markerFile(2)), `{"format": 9, "id": "`+id+`", "start_lsn": "0/3000028", "start_wal": "000000010000000000000003", "heartbeat": "2026-11-22T12:00:00Z"}`)
		}},
		{"no start segment", func(t *testing.T, st *faulty) {
			putFile(t, st, Path(id, markerFile(2)), `{"format": 1, "id": "`+id+`", "start_lsn": "0/3000028", "heartbeat": "2026-11-22T12:00:00Z"}`)
		}},
		{"unreadable", func(t *testing.T, st *faulty) {
			putMarker(t, st, id, 2, 3, testNow)
			st.fail = map[string]error{Path(id, markerFile(2)): errors.New("permission denied")}
		}},
		{"unlistable", func(t *testing.T, st *faulty) {
			putMarker(t, st, id, 2, 3, testNow)
			st.fail = map[string]error{"backups/" + id: errors.New("connection reset")}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &faulty{Storage: testArchive(t)}
			putFile(t, st, startedPath(id), "{}")
			tc.setup(t, st)
			if c, err := ReadCensus(ctx, st, CensusOptions{Now: fixedNow}); err == nil {
				t.Errorf("no error; census %+v", c)
			}
		})
	}
}

// A marker replaced by the next heartbeat between listing and reading is
// read again, not taken for an error or for nothing.
func TestCensusMarkerReplaced(t *testing.T) {
	ctx := context.Background()
	id := idAt(time.Hour)
	st := &replacing{Storage: testArchive(t), id: id}
	putMarker(t, st, id, 1, 3, testNow.Add(-time.Minute))
	c, err := ReadCensus(ctx, st, CensusOptions{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Pending) != 1 || c.Pending[0].State != Running || c.Pending[0].Marker.Heartbeat != testNow {
		t.Errorf("census %+v, want the replacing marker, running", c.Pending)
	}
}

// replacing writes the next marker of id, and removes the one asked for,
// the first time a marker is opened.
type replacing struct {
	archive.Storage
	id   string
	done bool
}

func (r *replacing) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if !r.done && strings.HasPrefix(name, "backups/"+r.id+"/inprogress-") {
		r.done = true
		m := InProgress{Format: InProgressFormat, ID: r.id, StartLSN: 0x3000028, StartTimeline: 1,
			StartWAL: "000000010000000000000003", Heartbeat: testNow}
		b, _ := json.Marshal(m)
		if err := r.Storage.Put(ctx, Path(r.id, markerFile(2)), bytes.NewReader(b)); err != nil {
			return nil, err
		}
		if err := r.Storage.Remove(ctx, name); err != nil {
			return nil, err
		}
	}
	return r.Storage.Open(ctx, name)
}

// Expire never touches a backup in progress and keeps its WAL, removes no
// WAL while a backup is starting, removes abandoned backups, and removes
// nothing when a marker cannot be read.
func TestExpireInProgress(t *testing.T) {
	ctx := context.Background()
	running, abandoned := idAt(30*time.Hour), idAt(29*time.Hour)
	setup := func(t *testing.T) archive.Storage {
		st := testArchive(t)
		putSegments(t, st, 1, 2, 9)
		putBackup(t, st, idAt(40*time.Hour), 1, 2, 2)
		putMarker(t, st, running, 5, 3, testNow.Add(-30*time.Second))
		putFile(t, st, Path(running, "base.tar.zst"), "streaming")
		putMarker(t, st, abandoned, 1, 4, testNow.Add(-3*time.Hour))
		putFile(t, st, Path(abandoned, "base.tar.zst"), "half")
		putBackup(t, st, idAt(20*time.Hour), 1, 6, 6)
		putBackup(t, st, idAt(10*time.Hour), 1, 8, 8)
		return st
	}
	walLeft := func(t *testing.T, st archive.Storage) string {
		files, _ := st.List(ctx, archive.WALDir)
		var names []string
		for _, f := range files {
			names = append(names, strings.TrimSuffix(f.Name, ".zst")[22:])
		}
		return fmt.Sprint(names)
	}

	st := setup(t)
	ex, err := Expire(ctx, st, ExpireOptions{Keep: 1, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Backups) != 2 || fmt.Sprint(ex.Incomplete) != "["+abandoned+"]" || ex.KeptFrom != "000000010000000000000003" ||
		len(ex.InProgress) != 1 || ex.InProgress[0].ID != running {
		t.Errorf("expired %+v; want 2 backups and %s removed, %s kept with its WAL from segment 3", ex, abandoned, running)
	}
	if got := walLeft(t, st); got != "[03 04 05 06 07 08 09]" {
		t.Errorf("WAL left %s, want segments 3 to 9: the running backup's", got)
	}
	if files, _ := st.List(ctx, "backups/"+running); len(files) != 2 {
		t.Errorf("files of the running backup left: %v", files)
	}
	if files, _ := st.List(ctx, "backups/"+abandoned); len(files) != 0 {
		t.Errorf("files of the abandoned backup left: %v", files)
	}
	if _, err := st.Stat(ctx, startedPath(abandoned)); !archive.IsNotExist(err) {
		t.Errorf("the abandoned backup's start marker: %v", err)
	}

	// Starting: no marker yet, no WAL goes.
	st = setup(t)
	putFile(t, st, startedPath(idAt(time.Minute)), "{}")
	ex, err = Expire(ctx, st, ExpireOptions{Keep: 1, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if !ex.KeptAll || len(ex.WAL) != 0 || len(ex.InProgress) != 2 {
		t.Errorf("expired %+v while a backup starts; want no WAL and both in progress kept", ex)
	}
	if got := walLeft(t, st); got != "[02 03 04 05 06 07 08 09]" {
		t.Errorf("WAL left %s while a backup starts, want all", got)
	}

	// A damaged marker: nothing goes.
	st = setup(t)
	putFile(t, st, Path(running, markerFile(6)), "{damaged")
	if ex, err := Expire(ctx, st, ExpireOptions{Keep: 1, Now: fixedNow}); err == nil {
		t.Errorf("Expire with a damaged marker: no error, %+v", ex)
	}
	if got := walLeft(t, st); got != "[02 03 04 05 06 07 08 09]" {
		t.Errorf("WAL left %s with a damaged marker, want all", got)
	}
	if l, _ := List(ctx, st); len(l.Complete) != 3 {
		t.Errorf("complete backups left with a damaged marker: %s, want all 3", ids(l.Complete))
	}
}

func TestInProgressJSON(t *testing.T) {
	m := InProgress{Format: 1, ID: "20261122T011500Z", StartLSN: 0x3000028, StartTimeline: 2, StartWAL: "000000020000000000000003",
		StartTime: testNow, Heartbeat: testNow.Add(time.Minute), Host: "db1", PID: 99}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	json.Unmarshal(b, &raw)
	if raw["start_lsn"] != "0/03000028" || raw["heartbeat"] != "2026-11-22T12:01:00Z" || raw["start_wal"] != m.StartWAL {
		t.Errorf("marker JSON %s", b)
	}
	var got InProgress
	if err := json.Unmarshal(b, &got); err != nil || got != m {
		t.Errorf("round trip: %+v, %v; want %+v", got, err, m)
	}
}
