package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/walship/walship/wal"
)

// Names of the fixed parts of an archive.
const (
	IdentityFile = "walship.json" // the archive's identity
	WALDir       = "wal"          // whole WAL files and tail directories
	BackupsDir   = "backups"      // base backups
)

// WALPath returns the archive name of a stored WAL file: name is a WAL file
// name as PostgreSQL gives it and suffix the compression suffix ("", ".zst" or ".s2").
func WALPath(name, suffix string) string { return WALDir + "/" + name + suffix }

// FormatVersion is the version of the archive layout that walship.json
// records. A later walship that changes the layout bumps it, and an older one
// refuses to write into an archive it does not understand.
const FormatVersion = 1

// Identity is the content of walship.json: which cluster the archive belongs
// to. The first push of a segment into an empty archive records it; every
// later segment must match it, because a standby fed segments of two clusters
// is corrupted silently.
type Identity struct {
	Format      int       `json:"format"`
	SystemID    uint64    `json:"system_identifier,string"`
	PGVersion   int       `json:"pg_version"`
	SegmentSize int64     `json:"wal_segment_size"`
	BlockSize   int       `json:"wal_block_size"`
	Created     time.Time `json:"created"`
}

// ErrNoIdentity is returned by ReadIdentity for an archive that has no
// walship.json yet. It matches fs.ErrNotExist.
var ErrNoIdentity = fmt.Errorf("archive has no %s yet: %w", IdentityFile, errNotExist)

// ErrIdentityMismatch is returned when a file does not belong to the cluster
// an archive records.
var ErrIdentityMismatch = errors.New("archive belongs to another cluster")

// IdentityFromHeader builds the identity of the cluster that wrote the
// segment whose first page header is h.
func IdentityFromHeader(h wal.LongHeader, now time.Time) Identity {
	return Identity{
		Format:      FormatVersion,
		SystemID:    h.SystemID,
		PGVersion:   h.PGVersion(),
		SegmentSize: int64(h.SegmentSize),
		BlockSize:   int(h.BlockSize),
		Created:     now.UTC(),
	}
}

// ReadIdentity reads the archive's walship.json.
func ReadIdentity(ctx context.Context, st Storage) (Identity, error) {
	rc, err := st.Open(ctx, IdentityFile)
	if IsNotExist(err) {
		return Identity{}, ErrNoIdentity
	}
	if err != nil {
		return Identity{}, fmt.Errorf("read %s: %w", IdentityFile, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<16))
	if err != nil {
		return Identity{}, fmt.Errorf("read %s: %w", IdentityFile, err)
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return Identity{}, fmt.Errorf("%s in %s is damaged: %w", IdentityFile, st, err)
	}
	if id.Format > FormatVersion {
		return Identity{}, fmt.Errorf("%s has layout version %d, this walship understands up to %d: upgrade walship",
			IdentityFile, id.Format, FormatVersion)
	}
	if id.SystemID == 0 || !wal.ValidSegmentSize(id.SegmentSize) {
		return Identity{}, fmt.Errorf("%s in %s is damaged: system identifier %d, segment size %d",
			IdentityFile, st, id.SystemID, id.SegmentSize)
	}
	return id, nil
}

// InitIdentity records id as the archive's identity unless it has one
// already, and returns the identity the archive holds afterwards: id, or the
// one another process recorded first.
func InitIdentity(ctx context.Context, st Storage, id Identity) (Identity, error) {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return Identity{}, err
	}
	err = st.Put(ctx, IdentityFile, strings.NewReader(string(b)+"\n"))
	if err == nil {
		return id, nil
	}
	if !IsExist(err) {
		return Identity{}, fmt.Errorf("record archive identity: %w", err)
	}
	return ReadIdentity(ctx, st)
}

// Check reports whether the segment whose first page header is h may live in
// an archive of this identity.
func (id Identity) Check(h wal.LongHeader) error {
	if h.SystemID != id.SystemID {
		return fmt.Errorf("%w: %w: segment has system identifier %d, archive has %d (pg_controldata shows a cluster's); use one archive per cluster",
			ErrIdentityMismatch, wal.ErrForeignSystem, h.SystemID, id.SystemID)
	}
	if int64(h.SegmentSize) != id.SegmentSize {
		return fmt.Errorf("%w: %w: segment size %d, archive has %d", ErrIdentityMismatch, wal.ErrSegmentSize,
			h.SegmentSize, id.SegmentSize)
	}
	return nil
}
