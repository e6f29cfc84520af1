package wal

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrInvalidBackupHistory means a file is not a backup history file.
var ErrInvalidBackupHistory = errors.New("invalid backup history file")

// BackupHistory is what a backup history file
// ("000000010000000000000002.00000028.backup") records.
type BackupHistory struct {
	Start, Stop LSN
	StartFile   string // the segment holding Start, as the file names it
}

// ParseBackupHistory parses the backup history file named n, which the
// server writes at the end of a base backup: text lines of "KEY: value",
// among them "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)"
// and "STOP WAL LOCATION: …". It checks that the start location is the one
// the name gives, so that a segment or any other file pushed under a
// backup history name is refused. segSize is the cluster's segment size;
// zero skips checking the segment the start LSN falls in.
func ParseBackupHistory(n Name, b []byte, segSize int64) (BackupHistory, error) {
	var h BackupHistory
	if n.Kind != Backup {
		return h, fmt.Errorf("%w: %s is not a backup history file name", ErrInvalidName, n)
	}
	if !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
		return h, fmt.Errorf("%w: %s is not text", ErrInvalidBackupHistory, n)
	}
	var haveStart, haveStop bool
	for line := range bytes.Lines(b) {
		line = bytes.TrimRight(line, "\r\n")
		key, val, ok := bytes.Cut(line, []byte(": "))
		if !ok {
			continue
		}
		switch string(key) {
		case "START WAL LOCATION":
			var lsn, file string
			if _, err := fmt.Sscanf(string(val), "%s (file %24s)", &lsn, &file); err != nil {
				return h, fmt.Errorf("%w: %s: START WAL LOCATION %q: want \"X/X (file NAME)\"", ErrInvalidBackupHistory, n, val)
			}
			start, err := ParseLSN(lsn)
			if err != nil {
				return h, fmt.Errorf("%w: %s: START WAL LOCATION: %w", ErrInvalidBackupHistory, n, err)
			}
			h.Start, h.StartFile, haveStart = start, file, true
		case "STOP WAL LOCATION":
			var lsn string
			if _, err := fmt.Sscanf(string(val), "%s", &lsn); err != nil {
				return h, fmt.Errorf("%w: %s: STOP WAL LOCATION %q", ErrInvalidBackupHistory, n, val)
			}
			stop, err := ParseLSN(lsn)
			if err != nil {
				return h, fmt.Errorf("%w: %s: STOP WAL LOCATION: %w", ErrInvalidBackupHistory, n, err)
			}
			h.Stop, haveStop = stop, true
		}
	}
	if !haveStart || !haveStop {
		return h, fmt.Errorf("%w: %s lacks its START WAL LOCATION or STOP WAL LOCATION line", ErrInvalidBackupHistory, n)
	}
	seg := n.String()[:segmentNameLen]
	if h.StartFile != seg {
		return h, fmt.Errorf("%w: %s says the backup started in %s, its name says %s", ErrInvalidBackupHistory, n, h.StartFile, seg)
	}
	if segSize > 0 {
		if SegmentOffset(h.Start, segSize) != int64(n.Offset) || SegmentName(n.TLI, SegmentOf(h.Start, segSize), segSize) != seg {
			return h, fmt.Errorf("%w: %s says the backup started at %s, which is not where its name says", ErrInvalidBackupHistory, n, h.Start)
		}
	}
	if h.Stop < h.Start {
		return h, fmt.Errorf("%w: %s stops at %s, before its start %s", ErrInvalidBackupHistory, n, h.Stop, h.Start)
	}
	return h, nil
}
