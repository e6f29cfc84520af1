package wal

import (
	"fmt"
	"strings"
)

// Kind tells which of the files PostgreSQL archives a name belongs to.
type Kind int

// The kinds of files archive_command is given.
const (
	// Segment is a whole WAL segment: "000000010000000000000001".
	Segment Kind = iota + 1
	// History is a timeline history file: "00000002.history".
	History
	// Backup is a backup history file written at the end of a base backup:
	// "000000010000000000000002.00000028.backup".
	Backup
	// Partial is the last, incomplete segment of the old timeline, archived by
	// a server at promotion: "000000010000000000000003.partial".
	Partial
)

// String returns the kind's name in lower case, for messages and logs.
func (k Kind) String() string {
	switch k {
	case Segment:
		return "segment"
	case History:
		return "history"
	case Backup:
		return "backup"
	case Partial:
		return "partial"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Name is a parsed WAL archive file name. Fields a kind does not use are zero.
type Name struct {
	Kind Kind
	// TLI is the timeline: the first eight hex digits of a segment name, or
	// the whole number of a history file name.
	TLI TimeLine
	// Log is the high hex part of a segment name (Segment, Partial, Backup).
	Log uint32
	// Seg is the low hex part of a segment name (Segment, Partial, Backup).
	Seg uint32
	// Offset is the backup's start offset inside its segment, the middle
	// part of "<segment>.<offset>.backup" (Backup only).
	Offset uint32
}

const (
	segmentNameLen = 24
	partialSuffix  = ".partial"
	historySuffix  = ".history"
	backupSuffix   = ".backup"
	historyNameLen = 8 + len(historySuffix)
	partialNameLen = segmentNameLen + len(partialSuffix)
	backupNameLen  = segmentNameLen + 1 + 8 + len(backupSuffix)
)

// ParseName parses the name of a file PostgreSQL archives. It is strict
// because names become archive paths: exactly the forms PostgreSQL writes,
// upper-case hex digits only, a timeline other than 0, no directories.
// Anything else is an error wrapping ErrInvalidName that quotes s.
//
// ParseName checks the form only. Whether the low part of a segment name fits
// the cluster's segment size is checked by Name.SegNo.
func ParseName(s string) (Name, error) {
	n, ok := parseName(s)
	if !ok {
		return Name{}, invalidName(s)
	}
	if n.TLI == 0 {
		return Name{}, fmt.Errorf("%w %s: timeline 0 does not exist", ErrInvalidName, quote(s))
	}
	return n, nil
}

func parseName(s string) (Name, bool) {
	switch {
	case len(s) == segmentNameLen:
		return parseSegmentName(s, Segment)
	case len(s) == partialNameLen && strings.HasSuffix(s, partialSuffix):
		return parseSegmentName(s[:segmentNameLen], Partial)
	case len(s) == historyNameLen && strings.HasSuffix(s, historySuffix):
		tli, ok := parseHex32(s[:8], 8, 8, false)
		return Name{Kind: History, TLI: TimeLine(tli)}, ok
	case len(s) == backupNameLen && strings.HasSuffix(s, backupSuffix) && s[segmentNameLen] == '.':
		n, ok := parseSegmentName(s[:segmentNameLen], Backup)
		off, okOff := parseHex32(s[segmentNameLen+1:segmentNameLen+9], 8, 8, false)
		n.Offset = off
		return n, ok && okOff
	}
	return Name{}, false
}

func parseSegmentName(s string, kind Kind) (Name, bool) {
	tli, ok1 := parseHex32(s[0:8], 8, 8, false)
	log, ok2 := parseHex32(s[8:16], 8, 8, false)
	seg, ok3 := parseHex32(s[16:24], 8, 8, false)
	return Name{Kind: kind, TLI: TimeLine(tli), Log: log, Seg: seg}, ok1 && ok2 && ok3
}

// invalidName explains the mistakes people make; the rest gets the list of
// accepted forms.
func invalidName(s string) error {
	if strings.ContainsAny(s, `/\`) {
		return fmt.Errorf("%w %s: want a file name, not a path", ErrInvalidName, quote(s))
	}
	if _, ok := parseName(upperHex(s)); ok {
		return fmt.Errorf("%w %s: PostgreSQL writes upper-case hex digits", ErrInvalidName, quote(s))
	}
	return fmt.Errorf("%w %s: want a segment (24 hex digits), <segment>.partial, <segment>.<offset>.backup or <timeline>.history",
		ErrInvalidName, quote(s))
}

// upperHex upper-cases every dot-separated part of s but the suffix.
func upperHex(s string) string {
	parts := strings.Split(s, ".")
	for i := range parts {
		if i == 0 || i < len(parts)-1 {
			parts[i] = strings.ToUpper(parts[i])
		}
	}
	return strings.Join(parts, ".")
}

// String returns the canonical file name, so that ParseName(n.String())
// returns n for every name ParseName returned. A Name of an unknown kind
// formats as "", which ParseName rejects.
func (n Name) String() string {
	switch n.Kind {
	case Segment:
		return n.SegmentName()
	case Partial:
		return n.SegmentName() + partialSuffix
	case Backup:
		return fmt.Sprintf("%s.%08X%s", n.SegmentName(), n.Offset, backupSuffix)
	case History:
		return HistoryName(n.TLI)
	}
	return ""
}

// SegmentName returns the plain segment name a Segment, Partial or Backup
// name belongs to: the segment a .partial file would have completed, or the
// segment a base backup started in. It returns "" for other kinds.
func (n Name) SegmentName() string {
	switch n.Kind {
	case Segment, Partial, Backup:
		return fmt.Sprintf("%08X%08X%08X", uint32(n.TLI), n.Log, n.Seg)
	}
	return ""
}

// SegNo returns the number of the segment a Segment, Partial or Backup name
// belongs to, for a cluster with segments of segSize bytes. A name that cannot
// occur with that segment size (its low part or backup offset is too large)
// returns an error wrapping ErrInvalidName, as does an invalid segSize.
func (n Name) SegNo(segSize int64) (SegNo, error) {
	if !ValidSegmentSize(segSize) {
		return 0, fmt.Errorf("%w %s: invalid segment size %d", ErrInvalidName, quote(n.String()), segSize)
	}
	switch n.Kind {
	case Segment, Partial, Backup:
	default:
		return 0, fmt.Errorf("%w %s: a %s file names no segment", ErrInvalidName, quote(n.String()), n.Kind)
	}
	perID := SegmentsPerLogID(segSize)
	if uint64(n.Seg) >= perID {
		return 0, fmt.Errorf("%w %s: low part %08X is too large for %s segments (at most %08X)",
			ErrInvalidName, quote(n.String()), n.Seg, formatSize(segSize), perID-1)
	}
	if n.Kind == Backup && int64(n.Offset) >= segSize {
		return 0, fmt.Errorf("%w %s: offset %08X is beyond the end of a %s segment",
			ErrInvalidName, quote(n.String()), n.Offset, formatSize(segSize))
	}
	return SegNo(uint64(n.Log)*perID + uint64(n.Seg)), nil
}

// formatSize prints a segment size the way --wal-segsize takes it.
func formatSize(size int64) string {
	if size >= 1<<20 && size%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", size>>20)
	}
	return fmt.Sprintf("%d bytes", size)
}
