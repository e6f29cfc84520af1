package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"sync"

	"github.com/walship/walship/internal/pgver"
	"github.com/walship/walship/wal"
)

// ErrCorrupt says a backup file does not match its manifest, or the
// manifest its own checksum.
var ErrCorrupt = errors.New("backup is corrupt")

// castagnoli is the CRC-32C table, made on first use: making it computes
// the SSE 4.2 tables (about 0.2 ms), which every walship process would pay
// at start, and most calls compute no CRC-32C.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// Manifest is PostgreSQL's backup manifest (backup_manifest, version 1 or 2):
// every file of the backup with its size and checksum, and the WAL range
// recovery needs.
type Manifest struct {
	// Version is 1, or 2 from PostgreSQL 17 on (pgver's ManifestVersion).
	Version int
	// SystemID is the database system identifier; versions 2 and later
	// have it, 0 for version 1.
	SystemID  uint64
	Files     map[string]ManifestFile // by path relative to the data directory
	WALRanges []WALRange
}

// ManifestFile is one file of a manifest.
type ManifestFile struct {
	Size      int64
	Algorithm string // "CRC32C", or "NONE"
	Checksum  []byte // as PostgreSQL computes it; nil for "NONE"
}

// WALRange is one timeline's part of the WAL a backup needs.
type WALRange struct {
	Timeline wal.TimeLine
	Start    wal.LSN
	End      wal.LSN
}

type manifestJSON struct {
	Version  int     `json:"PostgreSQL-Backup-Manifest-Version"`
	SystemID *uint64 `json:"System-Identifier"`
	Files    []struct {
		Path        *string `json:"Path"`
		EncodedPath *string `json:"Encoded-Path"`
		Size        *int64  `json:"Size"`
		Algorithm   string  `json:"Checksum-Algorithm"`
		Checksum    string  `json:"Checksum"`
	} `json:"Files"`
	WALRanges []struct {
		Timeline uint32 `json:"Timeline"`
		Start    string `json:"Start-LSN"`
		End      string `json:"End-LSN"`
	} `json:"WAL-Ranges"`
	Checksum string `json:"Manifest-Checksum"`
}

// ParseManifest parses a backup manifest and checks its own SHA-256
// checksum, which covers every byte up to the line holding it.
func ParseManifest(b []byte) (*Manifest, error) {
	body := bytes.TrimRight(b, "\n")
	i := bytes.LastIndexByte(body, '\n')
	if i < 0 {
		return nil, fmt.Errorf("%w: manifest has no checksum line", ErrCorrupt)
	}
	var j manifestJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrCorrupt, err)
	}
	sum := sha256.Sum256(b[:i+1])
	if want, err := hex.DecodeString(j.Checksum); err != nil || !bytes.Equal(want, sum[:]) {
		return nil, fmt.Errorf("%w: manifest checksum mismatch", ErrCorrupt)
	}
	if j.Version < 1 || j.Version > 2 {
		return nil, fmt.Errorf("manifest version %d: this walship reads versions 1 and 2", j.Version)
	}
	m := &Manifest{Version: j.Version, Files: make(map[string]ManifestFile, len(j.Files))}
	if j.SystemID != nil {
		m.SystemID = *j.SystemID
	}
	if m.Version >= 2 && m.SystemID == 0 {
		return nil, fmt.Errorf("%w: manifest version %d without a System-Identifier", ErrCorrupt, m.Version)
	}
	for _, f := range j.Files {
		var path string
		switch {
		case f.Path != nil:
			path = *f.Path
		case f.EncodedPath != nil:
			p, err := hex.DecodeString(*f.EncodedPath)
			if err != nil {
				return nil, fmt.Errorf("%w: manifest: Encoded-Path %q", ErrCorrupt, *f.EncodedPath)
			}
			path = string(p)
		default:
			return nil, fmt.Errorf("%w: manifest: a file without a path", ErrCorrupt)
		}
		if f.Size == nil || *f.Size < 0 {
			return nil, fmt.Errorf("%w: manifest: %s has no size", ErrCorrupt, path)
		}
		mf := ManifestFile{Size: *f.Size, Algorithm: strings.ToUpper(f.Algorithm)}
		if mf.Algorithm == "" {
			mf.Algorithm = "NONE"
		}
		if mf.Algorithm != "NONE" {
			c, err := hex.DecodeString(f.Checksum)
			if err != nil {
				return nil, fmt.Errorf("%w: manifest: checksum of %s", ErrCorrupt, path)
			}
			mf.Checksum = c
		}
		m.Files[path] = mf
	}
	for _, r := range j.WALRanges {
		start, err1 := wal.ParseLSN(r.Start)
		end, err2 := wal.ParseLSN(r.End)
		if err := errors.Join(err1, err2); err != nil || r.Timeline == 0 {
			return nil, fmt.Errorf("%w: manifest: WAL range: %v", ErrCorrupt, err)
		}
		m.WALRanges = append(m.WALRanges, WALRange{Timeline: wal.TimeLine(r.Timeline), Start: start, End: end})
	}
	return m, nil
}

// checker computes a file's checksum as it is written, for one algorithm of
// the manifest.
type checker struct {
	want ManifestFile
	crc  uint32
	n    int64
}

func (c *checker) Write(p []byte) (int, error) {
	if c.want.Algorithm == "CRC32C" {
		c.crc = crc32.Update(c.crc, castagnoli(), p)
	}
	c.n += int64(len(p))
	return len(p), nil
}

// check compares what was written with the manifest entry of path.
func (c *checker) check(path string) error {
	if c.n != c.want.Size {
		return fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrCorrupt, path, c.n, c.want.Size)
	}
	switch c.want.Algorithm {
	case "NONE":
		return nil
	case "CRC32C":
		// PostgreSQL writes the CRC in the server's byte order.
		var got, be [4]byte
		binary.LittleEndian.PutUint32(got[:], c.crc)
		binary.BigEndian.PutUint32(be[:], c.crc)
		if !bytes.Equal(got[:], c.want.Checksum) && !bytes.Equal(be[:], c.want.Checksum) {
			return fmt.Errorf("%w: %s: checksum %x, the manifest says %x", ErrCorrupt, path, got, c.want.Checksum)
		}
		return nil
	}
	return fmt.Errorf("%s: manifest checksum algorithm %s: walship backups use CRC32C", path, c.want.Algorithm)
}

// checkOrigin checks that man is the manifest a server of major with
// system identifier systemID writes: its version is the major's, and,
// from version 2 on, it names that system.
func (man *Manifest) checkOrigin(major pgver.Major, systemID uint64) error {
	if want := major.ManifestVersion(); man.Version != want && major.Known() {
		return fmt.Errorf("%w: manifest version %d, but %s writes version %d", ErrCorrupt, man.Version, major, want)
	}
	if man.SystemID != 0 && man.SystemID != systemID {
		return fmt.Errorf("%w: the manifest is of database system %d, the backup of %d", ErrCorrupt, man.SystemID, systemID)
	}
	return nil
}
