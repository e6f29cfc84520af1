package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/walship/walship/archive"
)

// DefaultTempAge is how long a temporary file must have gone unwritten
// before RemoveTemp takes it for left by a killed write. A push writes its
// file in milliseconds, and a write in progress keeps its file's
// modification time fresh, so an hour is ample; a backup's tar streams get
// the staleness limit instead (see TempOptions).
const DefaultTempAge = time.Hour

// TempFile is a temporary file of the archive: that of a write still
// running, or one a killed write left (see archive.TempFiles).
type TempFile struct {
	Path     string    `json:"path"` // relative to the archive root
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"` // when it was last written
}

// TempDir sums up the temporary files of one directory.
type TempDir struct {
	Dir   string `json:"dir"` // relative to the archive root, "." for the root
	Files int    `json:"files"`
	Bytes int64  `json:"bytes"`
	// Oldest is when the oldest was last written, OldestAge how long ago.
	Oldest    time.Time `json:"oldest"`
	OldestAge int64     `json:"oldest_age_seconds"`
}

// TempSummary sums up the temporary files of an archive, in all and per
// directory (those that hold any), sorted by directory.
type TempSummary struct {
	Files     int       `json:"files"`
	Bytes     int64     `json:"bytes"`
	Oldest    time.Time `json:"oldest,omitzero"`
	OldestAge int64     `json:"oldest_age_seconds"`
	Dirs      []TempDir `json:"dirs"`
}

// listTemp lists every temporary file of the archive. It returns a nil
// TempFiles when the backend cannot list them.
func listTemp(ctx context.Context, st archive.Storage) (archive.TempFiles, []archive.TempFile, error) {
	tf, ok := st.(archive.TempFiles)
	if !ok {
		return nil, nil, nil
	}
	files, err := tf.ListTemp(ctx, "")
	if errors.Is(err, errors.ErrUnsupported) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list temporary files: %w", err)
	}
	return tf, files, nil
}

// ReadTemp sums up the archive's temporary files, their ages as of now. It
// returns nil, and no error, when the backend cannot list them.
func ReadTemp(ctx context.Context, st archive.Storage, now time.Time) (*TempSummary, error) {
	tf, files, err := listTemp(ctx, st)
	if tf == nil {
		return nil, err
	}
	s := &TempSummary{Dirs: []TempDir{}}
	for _, f := range files {
		dir := f.Dir
		if dir == "" {
			dir = "."
		}
		if n := len(s.Dirs); n == 0 || s.Dirs[n-1].Dir != dir {
			s.Dirs = append(s.Dirs, TempDir{Dir: dir})
		}
		d := &s.Dirs[len(s.Dirs)-1]
		d.Files++
		d.Bytes += f.Size
		if d.Oldest.IsZero() || f.ModTime.Before(d.Oldest) {
			d.Oldest = f.ModTime
		}
		s.Files++
		s.Bytes += f.Size
		if s.Oldest.IsZero() || f.ModTime.Before(s.Oldest) {
			s.Oldest = f.ModTime
		}
	}
	age := func(t time.Time) int64 { return int64(max(0, now.Sub(t)) / time.Second) }
	for i := range s.Dirs {
		s.Dirs[i].OldestAge = age(s.Dirs[i].Oldest)
	}
	if s.Files > 0 {
		s.OldestAge = age(s.Oldest)
	}
	return s, nil
}

// TempOptions adjust RemoveTemp.
type TempOptions struct {
	// Age is how long ago a temporary file must have been last written to
	// be removed: DefaultTempAge when zero. Under backups/ it is at least
	// StaleAfter, as a backup writes each tar stream into one temporary
	// file for as long as it runs.
	Age time.Duration
	// StaleAfter is how old a backup's in-progress marker may get before
	// the backup is taken for dead (CensusOptions.StaleAfter).
	StaleAfter time.Duration
	DryRun     bool             // only report what would go
	Now        func() time.Time // the clock; tests replace it
	Log        *slog.Logger
}

// TempRemoved is what RemoveTemp removed, or would remove in a dry run.
type TempRemoved struct {
	Removed []TempFile `json:"removed"`
	Bytes   int64      `json:"bytes"`
	// Kept counts the temporary files left: written to more recently than
	// the age applied, or in the directory of a backup in progress.
	Kept int `json:"kept"`
	// Age and BackupAge are the ages applied: under backups/, and
	// everywhere else.
	Age       int64 `json:"age_seconds"`
	BackupAge int64 `json:"backups_age_seconds"`
}

// RemoveTemp removes the temporary files that killed writes left in the
// archive: those last written opts.Age ago or longer (an hour by default)
// and, under backups/, also at least opts.StaleAfter ago and not in the
// directory of a backup that is running or starting (see ReadCensus). The
// directory of a backup that is gone (no <id>.json, no <id>.started) goes
// too once it is empty. If it cannot tell which backups are running, it
// removes nothing. It returns nil, and no error, when the backend cannot
// list temporary files.
func RemoveTemp(ctx context.Context, st archive.Storage, opts TempOptions) (*TempRemoved, error) {
	age := opts.Age
	if age <= 0 {
		age = DefaultTempAge
	}
	stale := opts.StaleAfter
	if stale <= 0 {
		stale = DefaultStaleAfter
	}
	backupAge := max(age, stale)
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tf, files, err := listTemp(ctx, st)
	if tf == nil {
		return nil, err
	}
	res := &TempRemoved{Removed: []TempFile{}, Age: int64(age / time.Second), BackupAge: int64(backupAge / time.Second)}
	t := now()
	var census *Census
	running := map[string]bool{}
	var remove []archive.TempFile
	for _, f := range files {
		id, inBackups := backupDir(f.Dir)
		limit := age
		if inBackups {
			limit = backupAge
		}
		if t.Sub(f.ModTime) < limit {
			res.Kept++
			continue
		}
		if id != "" && census == nil {
			// Its warnings are the WAL cleanup's to give.
			c, err := ReadCensus(ctx, st, CensusOptions{StaleAfter: stale, Now: now})
			if err != nil {
				return nil, fmt.Errorf("cannot tell which backups are running, so no temporary file was removed: %w", err)
			}
			census = &c
			for _, p := range c.Running() {
				running[p.ID] = true
			}
		}
		if running[id] {
			res.Kept++
			continue
		}
		remove = append(remove, f)
	}

	gone := map[string]bool{} // directories of backups that are no more
	for _, f := range remove {
		if !opts.DryRun {
			err := tf.RemoveTemp(ctx, f.Dir, f.Name)
			if archive.IsNotExist(err) {
				continue // removed by someone else meanwhile
			}
			if err != nil {
				return res, fmt.Errorf("remove temporary file %s: %w", f.Path(), err)
			}
		}
		log.Debug("removed a temporary file", "path", f.Path(), "size", f.Size, "modified", f.ModTime, "dry_run", opts.DryRun)
		res.Removed = append(res.Removed, TempFile{Path: f.Path(), Size: f.Size, Modified: f.ModTime})
		res.Bytes += f.Size
		if id, _ := backupDir(f.Dir); id != "" && f.Dir == archive.BackupsDir+"/"+id {
			gone[id] = true
		}
	}
	if census != nil && !opts.DryRun {
		for _, m := range census.Complete {
			delete(gone, m.ID)
		}
		for _, p := range census.Pending {
			delete(gone, p.ID)
		}
		for id := range gone {
			_ = st.Remove(ctx, archive.BackupsDir+"/"+id) // only if empty: another file keeps it
		}
	}
	if len(res.Removed) > 0 {
		log.Info("removed temporary files left by interrupted writes", "files", len(res.Removed), "bytes", res.Bytes,
			"age", age, "backups_age", backupAge, "dry_run", opts.DryRun)
	}
	return res, nil
}

// backupDir says whether dir is backups/ or below, and names the backup
// whose directory it is in, "" for backups/ itself.
func backupDir(dir string) (id string, ok bool) {
	if dir == archive.BackupsDir {
		return "", true
	}
	rest, ok := strings.CutPrefix(dir, archive.BackupsDir+"/")
	if !ok {
		return "", false
	}
	id, _, _ = strings.Cut(rest, "/")
	return id, true
}
