package wal

import (
	"bytes"
	"fmt"
	"strconv"
)

// HistoryEntry is one line of a timeline history file: the server left
// timeline TLI at LSN Switch. The file of timeline N lists every ancestor of
// N, oldest first.
type HistoryEntry struct {
	// TLI is the parent timeline.
	TLI TimeLine
	// Switch is the first LSN that is not on TLI but on its child.
	Switch LSN
	// Reason is PostgreSQL's free-text explanation, such as "no recovery
	// target specified"; it is for people only.
	Reason string
}

// ParseHistory parses a timeline history file ("00000002.history"). It reads
// what PostgreSQL's readTimeLineHistory reads: lines of a parent timeline in
// decimal, a switch LSN and a reason, separated by tabs (any blanks are
// accepted, as the server's sscanf does); blank lines and lines starting
// with '#' are ignored, and parent timelines must increase strictly. A file
// with no entries is legal and yields none. Errors wrap ErrInvalidHistory
// and name the line.
//
// The caller knows which timeline the file belongs to and should check that
// every entry's TLI is below it, as the server does.
func ParseHistory(b []byte) ([]HistoryEntry, error) {
	var entries []HistoryEntry
	for lineNo := 1; len(b) > 0; lineNo++ {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		line = bytes.TrimLeft(line, blanks)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		e, err := parseHistoryLine(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrInvalidHistory, lineNo, err)
		}
		if n := len(entries); n > 0 && e.TLI <= entries[n-1].TLI {
			return nil, fmt.Errorf("%w: line %d: timeline %d follows timeline %d; timelines must increase",
				ErrInvalidHistory, lineNo, e.TLI, entries[n-1].TLI)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// blanks is what the server's isspace skips, but for the newline that ends a line.
const blanks = " \t\r\v\f"

func parseHistoryLine(line []byte) (HistoryEntry, error) {
	field, rest := cutBlank(line)
	tli, err := strconv.ParseUint(string(field), 10, 32)
	if err != nil || tli == 0 {
		return HistoryEntry{}, fmt.Errorf("want a timeline ID in decimal, not %s", quote(string(field)))
	}
	field, rest = cutBlank(bytes.TrimLeft(rest, blanks))
	lsn, err := ParseLSN(string(field))
	if err != nil {
		return HistoryEntry{}, fmt.Errorf("want a switch LSN after the timeline: %w", err)
	}
	return HistoryEntry{
		TLI:    TimeLine(tli),
		Switch: lsn,
		Reason: string(bytes.Trim(rest, blanks)),
	}, nil
}

// cutBlank splits line at its first blank.
func cutBlank(line []byte) (field, rest []byte) {
	if i := bytes.IndexAny(line, blanks); i >= 0 {
		return line[:i], line[i:]
	}
	return line, nil
}

// FormatHistory returns entries as PostgreSQL writes a history file, one
// "parentTLI<TAB>switchLSN<TAB>reason" line each; only the LSN's zero padding
// (see LSN.String) differs, which the server reads the same. Tests and tools
// that build history files use it; ParseHistory reads it back.
func FormatHistory(entries []HistoryEntry) []byte {
	var b []byte
	for _, e := range entries {
		b = fmt.Appendf(b, "%d\t%s\t%s\n", e.TLI, e.Switch, e.Reason)
	}
	return b
}
