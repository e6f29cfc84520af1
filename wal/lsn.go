package wal

import (
	"fmt"
	"math/bits"
	"strings"
)

// LSN is a log sequence number: a byte position in the WAL stream of one
// database system, PostgreSQL's XLogRecPtr.
type LSN uint64

// ParseLSN parses an LSN as PostgreSQL prints it: two hexadecimal numbers of
// one to eight digits, separated by a slash ("16/B374D848"). Both cases of hex
// digits are accepted because pg_lsn input is case-insensitive and people
// type LSNs by hand; signs, spaces and "0x" prefixes are not.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("%w %s: want two hex numbers like 16/B374D848", ErrInvalidLSN, quote(s))
	}
	h, okh := parseHex32(hi, 1, 8, true)
	l, okl := parseHex32(lo, 1, 8, true)
	if !okh || !okl {
		return 0, fmt.Errorf("%w %s: want two hex numbers of 1 to 8 digits like 16/B374D848", ErrInvalidLSN, quote(s))
	}
	return LSN(uint64(h)<<32 | uint64(l)), nil
}

// String formats l as "%X/%08X". The fixed-width low part keeps LSNs in logs
// aligned; PostgreSQL pads it too since a 2025 change (commit 2633dae), while
// older servers print "%X/%X". ParseLSN reads both.
func (l LSN) String() string {
	return fmt.Sprintf("%X/%08X", uint32(l>>32), uint32(l))
}

// TimeLine is a timeline ID. PostgreSQL starts at 1 and never uses 0, so 0
// means "unknown" or "invalid" wherever a TimeLine is expected.
type TimeLine uint32

// Segment sizes a cluster can be initialized with (initdb --wal-segsize).
const (
	MinSegmentSize     = 1 << 20
	MaxSegmentSize     = 1 << 30
	DefaultSegmentSize = 16 << 20
)

// ValidSegmentSize reports whether size is a WAL segment size PostgreSQL
// accepts: a power of two from 1 MiB to 1 GiB.
func ValidSegmentSize(size int64) bool {
	return size >= MinSegmentSize && size <= MaxSegmentSize && size&(size-1) == 0
}

// SegNo numbers the segments of a WAL stream from 0; segment n holds the LSNs
// [n*segSize, (n+1)*segSize). It is PostgreSQL's XLogSegNo.
type SegNo uint64

// SegmentOf returns the segment that holds lsn, like XLByteToSeg.
func SegmentOf(lsn LSN, segSize int64) SegNo {
	mustSegmentSize(segSize)
	return SegNo(uint64(lsn) >> bits.TrailingZeros64(uint64(segSize)))
}

// Start returns the first LSN of segment s.
func (s SegNo) Start(segSize int64) LSN {
	mustSegmentSize(segSize)
	return LSN(uint64(s) << bits.TrailingZeros64(uint64(segSize)))
}

// SegmentOffset returns the position of lsn inside its segment.
func SegmentOffset(lsn LSN, segSize int64) int64 {
	mustSegmentSize(segSize)
	return int64(uint64(lsn) & uint64(segSize-1))
}

// SegmentsPerLogID returns how many segments share one value of the middle
// eight hex digits of a segment name. The name splits the segment number at
// 4 GiB of WAL (a historical "log ID"), so for 16 MiB segments the low part
// runs from 00000000 to 000000FF and then the middle part increments.
func SegmentsPerLogID(segSize int64) uint64 {
	mustSegmentSize(segSize)
	return 0x100000000 / uint64(segSize)
}

// SegmentName returns the file name of segment seg on timeline tli, like
// PostgreSQL's XLogFileName.
func SegmentName(tli TimeLine, seg SegNo, segSize int64) string {
	perID := SegmentsPerLogID(segSize)
	return fmt.Sprintf("%08X%08X%08X", uint32(tli), uint64(seg)/perID, uint64(seg)%perID)
}

// HistoryName returns the file name of the history file of timeline tli,
// like PostgreSQL's TLHistoryFileName.
func HistoryName(tli TimeLine) string {
	return fmt.Sprintf("%08X.history", uint32(tli))
}

func mustSegmentSize(segSize int64) {
	if !ValidSegmentSize(segSize) {
		panic(fmt.Sprintf("wal: invalid segment size %d (validate it with ValidSegmentSize first)", segSize))
	}
}

// parseHex32 parses s as a hexadecimal number of min..max digits. Upper-case
// digits are always accepted, lower-case ones only when lower is set.
func parseHex32(s string, min, max int, lower bool) (uint32, bool) {
	if len(s) < min || len(s) > max {
		return 0, false
	}
	var v uint32
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		case lower && 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint32(d)
	}
	return v, true
}

// quote quotes untrusted input for an error message, shortened so that a
// hostile or broken caller cannot fill the log.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
