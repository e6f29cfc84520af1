package backup

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/walship/walship/archive"
)

const tmpRandom = ".tmp.0123456789abcdef"

// putTemp leaves a temporary file of size bytes in the local archive st, as
// a Put killed age before testNow would, and returns its path.
func putTemp(t *testing.T, st archive.Storage, dir, base string, size int, age time.Duration) string {
	t.Helper()
	p := "." + base + tmpRandom
	if dir != "" {
		p = dir + "/" + p
	}
	full := filepath.Join(st.String(), filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(full), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, make([]byte, size), 0o640); err != nil {
		t.Fatal(err)
	}
	mt := testNow.Add(-age)
	if err := os.Chtimes(full, mt, mt); err != nil {
		t.Fatal(err)
	}
	return p
}

func tempExists(t *testing.T, st archive.Storage, p string) bool {
	t.Helper()
	_, err := os.Lstat(filepath.Join(st.String(), filepath.FromSlash(p)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func TestReadTemp(t *testing.T) {
	st := testArchive(t)
	s, err := ReadTemp(t.Context(), st, testNow)
	if err != nil || s == nil || s.Files != 0 || len(s.Dirs) != 0 || !s.Oldest.IsZero() || s.OldestAge != 0 {
		t.Fatalf("ReadTemp of an archive without temporary files: got %+v, %v; want an empty summary", s, err)
	}
	putTemp(t, st, "wal", "000000010000000000000003.zst", 100, 3*time.Hour)
	putTemp(t, st, "wal", "000000010000000000000004.zst", 50, 10*time.Minute)
	putTemp(t, st, "wal/000000010000000000000005.tail", "00000000-00001000.zst", 7, time.Minute)
	putTemp(t, st, "backups/"+idAt(5*time.Hour), "base.tar.zst", 1000, 4*time.Hour)
	putTemp(t, st, "", "walship.json", 1, 30*time.Hour)
	s, err = ReadTemp(t.Context(), st, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if s.Files != 5 || s.Bytes != 1158 || !s.Oldest.Equal(testNow.Add(-30*time.Hour)) || s.OldestAge != 30*3600 {
		t.Errorf("ReadTemp: got %d files, %d bytes, oldest %v (%ds ago); want 5, 1158, %v (%ds ago)",
			s.Files, s.Bytes, s.Oldest, s.OldestAge, testNow.Add(-30*time.Hour), 30*3600)
	}
	want := []TempDir{
		{Dir: ".", Files: 1, Bytes: 1, Oldest: testNow.Add(-30 * time.Hour), OldestAge: 30 * 3600},
		{Dir: "backups/" + idAt(5*time.Hour), Files: 1, Bytes: 1000, Oldest: testNow.Add(-4 * time.Hour), OldestAge: 4 * 3600},
		{Dir: "wal", Files: 2, Bytes: 150, Oldest: testNow.Add(-3 * time.Hour), OldestAge: 3 * 3600},
		{Dir: "wal/000000010000000000000005.tail", Files: 1, Bytes: 7, Oldest: testNow.Add(-time.Minute), OldestAge: 60},
	}
	if !slices.EqualFunc(s.Dirs, want, func(a, b TempDir) bool {
		return a.Dir == b.Dir && a.Files == b.Files && a.Bytes == b.Bytes && a.Oldest.Equal(b.Oldest) && a.OldestAge == b.OldestAge
	}) {
		t.Errorf("ReadTemp per directory:\n got %+v\nwant %+v", s.Dirs, want)
	}

	if s, err := ReadTemp(t.Context(), struct{ archive.Storage }{st}, testNow); s != nil || err != nil {
		t.Errorf("ReadTemp of a backend without TempFiles: got %+v, %v; want nil, nil", s, err)
	}
}

// RemoveTemp removes what is old enough, under backups/ only what is older
// than the staleness limit as well, and never what is in the directory of a
// backup running or starting.
func TestRemoveTemp(t *testing.T) {
	st := testArchive(t)
	running, starting, abandoned := idAt(6*time.Hour), idAt(10*time.Minute), idAt(8*time.Hour)
	interrupted, complete, gone := idAt(9*time.Hour), idAt(30*time.Hour), idAt(40*time.Hour)
	putMarker(t, st, running, 3, 3, testNow.Add(-time.Minute))
	putFile(t, st, startedPath(starting), "{}")
	putMarker(t, st, abandoned, 1, 3, testNow.Add(-3*time.Hour))
	putFile(t, st, startedPath(interrupted), "{}")
	putBackup(t, st, complete, 1, 2, 3)

	type tmp struct {
		dir, base string
		age       time.Duration
		removed   bool
	}
	temps := []tmp{
		{"", "walship.json", 2 * time.Hour, true},
		{"wal", "000000010000000000000003.zst", 61 * time.Minute, true},
		{"wal", "000000010000000000000004.zst", 59 * time.Minute, false}, // may still be written
		{"wal/000000010000000000000005.tail", "00000000-00001000.zst", 5 * time.Hour, true},
		{"backups", running + ".json", 90 * time.Minute, false}, // older than 1h, not than 2h
		{"backups", abandoned + ".json", 150 * time.Minute, true},
		{"backups/" + running, "base.tar.zst", 5 * time.Hour, false},       // its backup runs
		{"backups/" + running, "16384.tar.zst", 5 * time.Hour, false},      // its backup runs
		{"backups/" + starting, "base.tar.zst", 5 * time.Hour, false},      // its backup starts
		{"backups/" + abandoned, "base.tar.zst", 5 * time.Hour, true},      // its backup died
		{"backups/" + abandoned, "16384.tar.zst", 90 * time.Minute, false}, // too young
		{"backups/" + interrupted, "base.tar.zst", 3 * time.Hour, true},
		{"backups/" + complete, "x.tar.zst", 3 * time.Hour, true},
		{"backups/" + gone, "base.tar.zst", 50 * time.Hour, true},
	}
	var paths []string
	var removed []string
	var bytes int64
	for i, f := range temps {
		p := putTemp(t, st, f.dir, f.base, i+1, f.age)
		paths = append(paths, p)
		if f.removed {
			removed = append(removed, p)
			bytes += int64(i + 1)
		}
	}
	slices.Sort(removed)
	check := func(what string, res *TempRemoved, err error, dry bool) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		var got []string
		for _, f := range res.Removed {
			got = append(got, f.Path)
		}
		slices.Sort(got)
		if !slices.Equal(got, removed) || res.Bytes != bytes || res.Kept != len(temps)-len(removed) {
			t.Errorf("%s: removed %q (%d bytes), kept %d;\nwant %q (%d bytes), kept %d", what, got, res.Bytes, res.Kept,
				removed, bytes, len(temps)-len(removed))
		}
		if res.Age != 3600 || res.BackupAge != 7200 {
			t.Errorf("%s: ages %ds and %ds, want 3600s and 7200s", what, res.Age, res.BackupAge)
		}
		for i, p := range paths {
			if want := dry || !temps[i].removed; tempExists(t, st, p) != want {
				t.Errorf("%s: %s exists: %v, want %v", what, p, !want, want)
			}
		}
	}
	res, err := RemoveTemp(t.Context(), st, TempOptions{DryRun: true, Now: fixedNow})
	check("dry run", res, err, true)
	res, err = RemoveTemp(t.Context(), st, TempOptions{Now: fixedNow})
	check("RemoveTemp", res, err, false)

	// The directory of a backup that is gone goes with its last file; the
	// others stay.
	if _, err := os.Stat(filepath.Join(st.String(), "backups", gone)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("backups/%s, emptied, of no backup: got %v, want it removed", gone, err)
	}
	for _, id := range []string{running, starting, abandoned, interrupted, complete} {
		if _, err := os.Stat(filepath.Join(st.String(), "backups", id)); err != nil {
			t.Errorf("backups/%s: got %v, want it kept", id, err)
		}
	}

	// A longer age applies everywhere, and to backups/ when longer than
	// the staleness limit.
	res, err = RemoveTemp(t.Context(), st, TempOptions{Age: 3 * time.Hour, Now: fixedNow, DryRun: true})
	if err != nil || len(res.Removed) != 0 || res.Age != 3*3600 || res.BackupAge != 3*3600 {
		t.Errorf("RemoveTemp with a 3h age, after the 1h one: got %+v, %v; want nothing removed, both ages 3h", res, err)
	}
	res, err = RemoveTemp(t.Context(), st, TempOptions{Age: 50 * time.Minute, Now: fixedNow, DryRun: true})
	if err != nil || len(res.Removed) != 1 || res.Removed[0].Path != paths[2] {
		t.Errorf("RemoveTemp with a 50m age: got %+v, %v; want %s", res, err, paths[2])
	}
	res, err = RemoveTemp(t.Context(), st, TempOptions{StaleAfter: 80 * time.Minute, Now: fixedNow, DryRun: true})
	if err != nil || res.BackupAge != 80*60 || len(res.Removed) != 2 || res.Removed[0].Path != paths[4] || res.Removed[1].Path != paths[10] {
		t.Errorf("RemoveTemp with --stale-after 80m: got %+v, %v; want %s and %s, 90m old", res, err, paths[4], paths[10])
	}
}

// When it cannot tell which backups run, RemoveTemp removes nothing, not
// even under wal/.
func TestRemoveTempCensusUnreadable(t *testing.T) {
	st := testArchive(t)
	id := idAt(5 * time.Hour)
	putMarker(t, st, id, 1, 3, testNow.Add(-time.Minute))
	wal := putTemp(t, st, "wal", "000000010000000000000003.zst", 1, 5*time.Hour)
	bk := putTemp(t, st, "backups/"+id, "base.tar.zst", 1, 5*time.Hour)
	f := &faulty{Storage: st, fail: map[string]error{"backups/" + id: errors.New("i/o error")}}
	ft := struct {
		*faulty
		archive.TempFiles
	}{f, st.(archive.TempFiles)}
	res, err := RemoveTemp(t.Context(), ft, TempOptions{Now: fixedNow})
	if err == nil || res != nil {
		t.Errorf("RemoveTemp with backups/%s unreadable: got %+v, %v; want an error", id, res, err)
	}
	if !tempExists(t, st, wal) || !tempExists(t, st, bk) {
		t.Errorf("RemoveTemp that failed removed files")
	}
	// Without any temporary file of a backup old enough, it needs no
	// census.
	if err := os.Remove(filepath.Join(st.String(), filepath.FromSlash(bk))); err != nil {
		t.Fatal(err)
	}
	res, err = RemoveTemp(t.Context(), ft, TempOptions{Now: fixedNow})
	if err != nil || len(res.Removed) != 1 || tempExists(t, st, wal) {
		t.Errorf("RemoveTemp of wal/ only, census unreadable: got %+v, %v; want %s removed", res, err, wal)
	}
	if res, err := RemoveTemp(context.Background(), f, TempOptions{Now: fixedNow}); res != nil || err != nil {
		t.Errorf("RemoveTemp of a backend without TempFiles: got %+v, %v; want nil, nil", res, err)
	}
}
