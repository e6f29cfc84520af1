package wal

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/walship/walship/internal/pgver"
)

// LongHeaderSize is the size of XLogLongPageHeaderData, the page header that
// opens every WAL segment. Reading this many bytes of a file is enough to
// tell which segment of which database system it is.
const LongHeaderSize = 40

// Flag bits of LongHeader.Info (xlp_info).
const (
	// InfoFirstIsContRecord marks a page that starts with the rest of a record
	// begun on the previous page.
	InfoFirstIsContRecord = 0x0001
	// InfoLongHeader marks a long page header; PostgreSQL sets it on the
	// first page of every segment and nowhere else.
	InfoLongHeader = 0x0002
	// InfoBkpRemovable marks pages whose full-page images may be dropped.
	InfoBkpRemovable = 0x0004
	// InfoFirstIsOverwriteContRecord marks a page whose first record replaces
	// a record that was lost at a crash. It may be the first page of a
	// segment; PostgreSQL defines it since 15 and in minor releases of 10-14.
	InfoFirstIsOverwriteContRecord = 0x0008
	// InfoAllFlags holds every defined flag; PostgreSQL rejects a page with
	// any other bit set (XLP_ALL_FLAGS).
	InfoAllFlags = 0x000F
)

// LongHeader is the long page header at the start of every WAL segment,
// PostgreSQL's XLogLongPageHeaderData.
type LongHeader struct {
	// Magic identifies the WAL format, which changes with each major version.
	Magic uint16
	// Info holds the Info... flag bits.
	Info uint16
	// TLI is the timeline of the first record on the page. The first segment
	// of a new timeline starts with a page copied from the old one, so TLI
	// may be lower than the timeline in the segment's file name.
	TLI TimeLine
	// PageAddr is the LSN of the page: the start of the segment.
	PageAddr LSN
	// RemLen is how many bytes of a record begun in the previous segment
	// continue on this page.
	RemLen uint32
	// SystemID is the database system identifier from pg_control, the one
	// pg_controldata prints: it tells clusters apart.
	SystemID uint64
	// SegmentSize is the cluster's WAL segment size in bytes.
	SegmentSize uint32
	// BlockSize is the WAL page size in bytes (XLOG_BLCKSZ), normally 8192.
	BlockSize uint32
}

// MagicVersion returns the PostgreSQL major version whose WAL starts its
// pages with magic, and false for unknown values. The table is pgver's;
// development versions used other values, and walship only takes released
// ones.
func MagicVersion(magic uint16) (major int, ok bool) {
	m, ok := pgver.FromMagic(magic)
	return int(m), ok
}

// VersionMagic returns the page magic of PostgreSQL major version major, and
// false for versions MagicVersion does not know. Tests use it to build
// segments.
func VersionMagic(major int) (magic uint16, ok bool) {
	return pgver.Major(major).Magic()
}

// ParseLongHeader parses the first LongHeaderSize bytes of b as the first
// page header of a WAL segment. Every field that has a single legal value
// or range is checked, because walship reads untrusted files (anything a
// user copied into pg_wal or an archive) and must not mistake them for WAL.
// Errors wrap ErrNotWAL and say which check failed.
func ParseLongHeader(b []byte) (LongHeader, error) {
	if len(b) < LongHeaderSize {
		return LongHeader{}, fmt.Errorf("%w: %d bytes, a segment's page header has %d", ErrNotWAL, len(b), LongHeaderSize)
	}
	le := binary.LittleEndian
	h := LongHeader{
		Magic:       le.Uint16(b[0:]),
		Info:        le.Uint16(b[2:]),
		TLI:         TimeLine(le.Uint32(b[4:])),
		PageAddr:    LSN(le.Uint64(b[8:])),
		RemLen:      le.Uint32(b[16:]),
		SystemID:    le.Uint64(b[24:]),
		SegmentSize: le.Uint32(b[32:]),
		BlockSize:   le.Uint32(b[36:]),
	}
	if err := h.validate(); err != nil {
		return LongHeader{}, err
	}
	return h, nil
}

func (h LongHeader) validate() error {
	if _, ok := MagicVersion(h.Magic); !ok {
		if v, ok := MagicVersion(bits.ReverseBytes16(h.Magic)); ok {
			return fmt.Errorf("%w: page magic %04X is big-endian WAL of PostgreSQL %d; walship reads little-endian WAL only",
				ErrNotWAL, h.Magic, v)
		}
		if h == (LongHeader{}) {
			return fmt.Errorf("%w: the page header is all zeros (a preallocated or recycled file?)", ErrNotWAL)
		}
		if pgver.NewerMagic(h.Magic) {
			return fmt.Errorf("%w: page magic %04X is newer than PostgreSQL %d's, the newest this walship knows: "+
				"upgrade walship to read WAL of a newer major", ErrNotWAL, h.Magic, pgver.Newest)
		}
		return fmt.Errorf("%w: unknown page magic %04X (not PostgreSQL %d to %d)", ErrNotWAL, h.Magic, pgver.Oldest, pgver.Newest)
	}
	if h.Info&InfoLongHeader == 0 {
		return fmt.Errorf("%w: page info %04X has no long header flag; not the first page of a segment", ErrNotWAL, h.Info)
	}
	if h.Info&^InfoAllFlags != 0 {
		return fmt.Errorf("%w: page info %04X has undefined flag bits", ErrNotWAL, h.Info)
	}
	if h.TLI == 0 {
		return fmt.Errorf("%w: timeline 0 in page header", ErrNotWAL)
	}
	if !ValidSegmentSize(int64(h.SegmentSize)) {
		return fmt.Errorf("%w: segment size %d is not a power of two from 1 MiB to 1 GiB", ErrNotWAL, h.SegmentSize)
	}
	// configure --with-wal-blocksize takes 1 to 64 kB.
	if h.BlockSize < 1<<10 || h.BlockSize > 64<<10 || h.BlockSize&(h.BlockSize-1) != 0 {
		return fmt.Errorf("%w: WAL block size %d is not a power of two from 1 kB to 64 kB", ErrNotWAL, h.BlockSize)
	}
	if SegmentOffset(h.PageAddr, int64(h.SegmentSize)) != 0 {
		return fmt.Errorf("%w: page address %s is not the start of a %s segment", ErrNotWAL, h.PageAddr, formatSize(int64(h.SegmentSize)))
	}
	return nil
}

// AppendBinary appends the header's LongHeaderSize bytes to b in PostgreSQL's
// little-endian layout, with the padding zeroed. It encodes any header;
// ParseLongHeader decides whether the result is WAL.
func (h LongHeader) AppendBinary(b []byte) ([]byte, error) {
	le := binary.LittleEndian
	b = le.AppendUint16(b, h.Magic)
	b = le.AppendUint16(b, h.Info)
	b = le.AppendUint32(b, uint32(h.TLI))
	b = le.AppendUint64(b, uint64(h.PageAddr))
	b = le.AppendUint32(b, h.RemLen)
	b = le.AppendUint32(b, 0) // alignment padding before the uint64
	b = le.AppendUint64(b, h.SystemID)
	b = le.AppendUint32(b, h.SegmentSize)
	b = le.AppendUint32(b, h.BlockSize)
	return b, nil
}

// MarshalBinary returns the header's LongHeaderSize bytes, as AppendBinary.
func (h LongHeader) MarshalBinary() ([]byte, error) {
	return h.AppendBinary(make([]byte, 0, LongHeaderSize))
}

// PGVersion returns the PostgreSQL major version that wrote the segment, or
// 0 when the magic is unknown.
func (h LongHeader) PGVersion() int {
	v, _ := MagicVersion(h.Magic)
	return v
}

// Check verifies that h is the first page of the segment named n, a Segment
// or Partial name. It is what stands between an archive and a file stored
// under the wrong name or shipped from the wrong cluster:
//
//   - when segSize is not 0, the header's segment size must equal it
//     (ErrSegmentSize);
//   - when systemID is not 0, the header's system identifier must equal it
//     (ErrForeignSystem);
//   - the page address must be the start of the named segment, and the
//     header's timeline must not be later than the name's (ErrWrongSegment).
//     An earlier one is legal: the first segment of a new timeline begins
//     with the old timeline's pages, copied at promotion.
//
// Check also validates h as ParseLongHeader does, for headers built by hand.
func (h LongHeader) Check(n Name, systemID uint64, segSize int64) error {
	if n.Kind != Segment && n.Kind != Partial {
		return fmt.Errorf("%w %s: a %s file has no page header to check", ErrInvalidName, quote(n.String()), n.Kind)
	}
	if err := h.validate(); err != nil {
		return fmt.Errorf("%s: %w", n, err)
	}
	if segSize != 0 && int64(h.SegmentSize) != segSize {
		return fmt.Errorf("%w: %s has %s segments, want %s", ErrSegmentSize, n, formatSize(int64(h.SegmentSize)), formatSize(segSize))
	}
	if systemID != 0 && h.SystemID != systemID {
		return fmt.Errorf("%w: %s has database system identifier %d, want %d", ErrForeignSystem, n, h.SystemID, systemID)
	}
	size := int64(h.SegmentSize)
	seg, err := n.SegNo(size)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrWrongSegment, err)
	}
	if want := seg.Start(size); h.PageAddr != want {
		return fmt.Errorf("%w: %s starts at %s, the page header says %s (segment %s)",
			ErrWrongSegment, n, want, h.PageAddr, SegmentName(h.TLI, SegmentOf(h.PageAddr, size), size))
	}
	if h.TLI > n.TLI {
		return fmt.Errorf("%w: %s is on timeline %d, the page header says timeline %d", ErrWrongSegment, n, n.TLI, h.TLI)
	}
	return nil
}
