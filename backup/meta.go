package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// MetaFormat is the newest version of the backup.json layout. A reader
// refuses a later one. A full backup writes FullMetaFormat, which every
// walship reads; an incremental backup writes 2, so that a walship that
// knows nothing of parents refuses the archive instead of restoring an
// incremental backup by itself or expiring the backup it builds on.
const MetaFormat = 2

// FullMetaFormat is the backup.json version of a full backup.
const FullMetaFormat = 1

// idLayout formats backup ids: the UTC start time to the second.
const idLayout = "20060102T150405Z"

// Suffixes of the marker files in backups/.
const (
	metaSuffix    = ".json"
	startedSuffix = ".started"
)

// Meta is a complete backup's backup.json, stored as backups/<id>.json.
type Meta struct {
	Format int    `json:"format"`
	ID     string `json:"id"`
	Label  string `json:"label"`

	StartLSN      wal.LSN      `json:"-"`
	StopLSN       wal.LSN      `json:"-"`
	StartTimeline wal.TimeLine `json:"start_timeline"`
	StopTimeline  wal.TimeLine `json:"stop_timeline"`
	// StartWAL and StopWAL name the first and last segment recovery from
	// this backup needs before it is consistent.
	StartWAL  string    `json:"start_wal"`
	StopWAL   string    `json:"stop_wal"`
	StartTime time.Time `json:"start_time"`
	// StopTime is when the server ended the backup, by this host's clock: a
	// recovery target after it is past the backup's consistent point.
	StopTime time.Time `json:"stop_time"`

	FromStandby bool   `json:"from_standby"`
	PGVersion   int    `json:"pg_version"` // server_version_num, 150004
	SystemID    uint64 `json:"system_identifier,string"`
	SegmentSize int64  `json:"wal_segment_size"`

	Compression string `json:"compression"` // "zstd" or "none"
	// CompressedBy says who compressed the archives: "server" (BASE_BACKUP's
	// COMPRESSION) or "walship"; empty for none.
	CompressedBy string `json:"compressed_by,omitempty"`
	// Size is the bytes of the tar streams as PostgreSQL sent them, Stored
	// the bytes they take in the archive.
	Size   int64 `json:"size"`
	Stored int64 `json:"stored_size"`
	Files  int   `json:"files"` // files in the manifest

	// Archives lists the stored tar streams, base first.
	Archives []ArchiveFile `json:"archives"`
	// Manifest is the stored name of the backup manifest, in the backup's
	// directory.
	Manifest string `json:"manifest"`

	// Parent is, for an incremental backup (PostgreSQL 17), the id of the
	// backup it holds the changes since: a full backup or another
	// incremental one. Empty for a full backup.
	Parent string `json:"parent,omitempty"`
}

// Incremental reports whether m holds only the changes since m.Parent.
func (m Meta) Incremental() bool { return m.Parent != "" }

// ArchiveFile is one tar stream of a backup: the main data directory
// (Tablespace 0) or one tablespace.
type ArchiveFile struct {
	Name       string `json:"name"`                 // in the backup's directory: base.tar.zst
	Tablespace uint32 `json:"tablespace,omitempty"` // the tablespace OID; 0 for the data directory
	Location   string `json:"location,omitempty"`   // the tablespace's directory on the server
	Size       int64  `json:"size"`
	Stored     int64  `json:"stored_size"`
}

// metaJSON adds the LSNs in PostgreSQL's text form.
type metaJSON struct {
	*metaAlias
	StartLSN string `json:"start_lsn"`
	StopLSN  string `json:"stop_lsn"`
}

type metaAlias Meta

// MarshalJSON writes the LSNs as PostgreSQL prints them.
func (m Meta) MarshalJSON() ([]byte, error) {
	a := metaAlias(m)
	return json.Marshal(metaJSON{metaAlias: &a, StartLSN: m.StartLSN.String(), StopLSN: m.StopLSN.String()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (m *Meta) UnmarshalJSON(b []byte) error {
	j := metaJSON{metaAlias: (*metaAlias)(m)}
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	var err error
	if m.StartLSN, err = wal.ParseLSN(j.StartLSN); err != nil {
		return fmt.Errorf("start_lsn: %w", err)
	}
	if m.StopLSN, err = wal.ParseLSN(j.StopLSN); err != nil {
		return fmt.Errorf("stop_lsn: %w", err)
	}
	return nil
}

// Dir returns the backup's directory in the archive.
func (m Meta) Dir() string { return archive.BackupsDir + "/" + m.ID }

// Path returns the archive name of a file of backup id.
func Path(id, name string) string { return archive.BackupsDir + "/" + id + "/" + name }

func metaPath(id string) string    { return archive.BackupsDir + "/" + id + metaSuffix }
func startedPath(id string) string { return archive.BackupsDir + "/" + id + startedSuffix }

// ValidID reports whether id has the form of a backup id.
func ValidID(id string) bool {
	_, err := time.Parse(idLayout, id)
	return err == nil && len(id) == len(idLayout)
}

// ErrNoBackup is returned when no complete backup matches.
var ErrNoBackup = errors.New("no complete backup")

// Listing is what backups/ holds: the complete backups, oldest first, and
// the ids of backups that started but have no backup.json: running, or
// interrupted.
type Listing struct {
	Complete   []Meta
	Incomplete []string
}

// List reads every complete backup's backup.json and names the incomplete
// ones. A backup.json that cannot be parsed is an error: the archive is
// damaged, and guessing would pick the wrong backup.
func List(ctx context.Context, st archive.Storage) (Listing, error) {
	files, err := st.List(ctx, archive.BackupsDir)
	if err != nil {
		return Listing{}, fmt.Errorf("list backups: %w", err)
	}
	var l Listing
	complete := map[string]bool{}
	var started []string
	for _, fi := range files {
		switch {
		case strings.HasSuffix(fi.Name, metaSuffix) && ValidID(strings.TrimSuffix(fi.Name, metaSuffix)):
			id := strings.TrimSuffix(fi.Name, metaSuffix)
			m, err := ReadMeta(ctx, st, id)
			if err != nil {
				return Listing{}, err
			}
			l.Complete = append(l.Complete, m)
			complete[id] = true
		case strings.HasSuffix(fi.Name, startedSuffix) && ValidID(strings.TrimSuffix(fi.Name, startedSuffix)):
			started = append(started, strings.TrimSuffix(fi.Name, startedSuffix))
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

// ReadMeta reads the backup.json of backup id. A backup without one is not
// complete, and ReadMeta returns an error matching ErrNoBackup.
func ReadMeta(ctx context.Context, st archive.Storage, id string) (Meta, error) {
	if !ValidID(id) {
		return Meta{}, fmt.Errorf("%w: %q is not a backup id (like 20261122T011500Z)", ErrNoBackup, id)
	}
	rc, err := st.Open(ctx, metaPath(id))
	if archive.IsNotExist(err) {
		return Meta{}, fmt.Errorf("%w with id %s in %s", ErrNoBackup, id, st)
	}
	if err != nil {
		return Meta{}, fmt.Errorf("read backup %s: %w", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return Meta{}, fmt.Errorf("read backup %s: %w", id, err)
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("backup %s: %s is damaged: %w", id, metaPath(id), err)
	}
	if m.Format > MetaFormat {
		return Meta{}, fmt.Errorf("backup %s has format %d, this walship reads up to %d: upgrade walship", id, m.Format, MetaFormat)
	}
	if m.ID != id || len(m.Archives) == 0 || m.Archives[0].Tablespace != 0 || !wal.ValidSegmentSize(m.SegmentSize) ||
		m.StartTimeline == 0 || m.StopTimeline == 0 {
		return Meta{}, fmt.Errorf("backup %s: %s is damaged: wrong id, no base archive, bad segment size or timeline 0", id, metaPath(id))
	}
	return m, nil
}

func writeMeta(ctx context.Context, st archive.Storage, m Meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return st.Put(ctx, metaPath(m.ID), strings.NewReader(string(b)+"\n"))
}
