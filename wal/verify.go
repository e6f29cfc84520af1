package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/walship/walship/internal/pgver"
)

// Layout of WAL pages and records on a server with MAXALIGN 8 (every 64-bit
// platform), from PostgreSQL's xlog_internal.h and xlogrecord.h.
const (
	shortHeaderSize  = 24 // SizeOfXLogShortPHD
	recordHeaderSize = 24 // SizeOfXLogRecord
	recordCRCOffset  = 20 // offsetof(XLogRecord, xl_crc): the CRC covers the bytes before it
	maxAlign         = 8  // records start MAXALIGNed

	// maxRecordLen is MaxAllocSize: no server can read a longer record, and
	// since PostgreSQL 16 none writes one longer than 1020 MiB.
	maxRecordLen = 1<<30 - 1

	rmXLog     = 0    // RM_XLOG_ID
	xlogSwitch = 0x40 // XLOG_SWITCH, in the high bits of xl_info
	// Resource manager IDs ValidXLogRecordHeader accepts: the built-in ones
	// (the last is RM_LOGICALMSG_ID in 12 to 18) and, since 15, the custom
	// range.
	maxBuiltinRmgr = 21
	minCustomRmgr  = 128
)

// castagnoli is the CRC-32C table, made on first use: making it computes
// the SSE 4.2 tables (about 0.2 ms), which every walship process would pay
// at start, and most calls compute no CRC-32C.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// headerTable[j][b] is the CRC32C register contribution of byte b followed
// by j zero bytes, for updateHeader.
type headerTable [recordCRCOffset][256]uint32

// headerTables returns the headerTable, made on first use: every walship
// process links this package, and most verify no WAL.
var headerTables = sync.OnceValue(func() *headerTable {
	t := new(headerTable)
	for i := range 256 {
		crc := uint32(i)
		for range 8 {
			if crc&1 == 1 {
				crc = crc>>1 ^ crc32.Castagnoli
			} else {
				crc >>= 1
			}
		}
		t[0][i] = crc
	}
	for j := 1; j < len(t); j++ {
		for i := range 256 {
			t[j][i] = t[0][t[j-1][i]&0xFF] ^ t[j-1][i]>>8
		}
	}
	return t
})

// updateHeader returns crc32.Update(crc, castagnoli(), h[:20]) for the 20
// bytes of a record header the CRC covers. A call to crc32.Update for so
// few bytes costs more than the CRC instructions; here every byte has its
// own table, so the 20 lookups do not wait on each other.
func updateHeader(t *headerTable, crc uint32, h []byte) uint32 {
	h = h[:recordCRCOffset]
	s := ^crc
	s = t[19][h[0]^byte(s)] ^ t[18][h[1]^byte(s>>8)] ^ t[17][h[2]^byte(s>>16)] ^ t[16][h[3]^byte(s>>24)] ^
		t[15][h[4]] ^ t[14][h[5]] ^ t[13][h[6]] ^ t[12][h[7]] ^
		t[11][h[8]] ^ t[10][h[9]] ^ t[9][h[10]] ^ t[8][h[11]] ^
		t[7][h[12]] ^ t[6][h[13]] ^ t[5][h[14]] ^ t[4][h[15]] ^
		t[3][h[16]] ^ t[2][h[17]] ^ t[1][h[18]] ^ t[0][h[19]]
	return ^s
}

// zeros is compared against to check padding: the largest WAL page.
var zeros [64 << 10]byte

// DamageError is the verdict of a SegmentVerifier on a segment that is not
// intact WAL. It wraps ErrDamagedWAL and, for a first page header that does
// not match the segment's name or size, the error of that check
// (ErrNotWAL, ErrWrongSegment, ErrSegmentSize).
type DamageError struct {
	// Segment is the file name the segment was verified under.
	Segment string
	// LSN is where the damage is: the start of the record or page that
	// failed a check, or of the byte that should have been zero. It is 0
	// when VerifySegment cannot read the first page header, and so does
	// not know where the segment starts.
	LSN LSN
	// Problem says what check failed; it names the LSN itself.
	Problem string
	// Err is the error of the page header check, or nil.
	Err error
}

// Error formats the problem as "damaged WAL in <segment>: <problem>".
func (e *DamageError) Error() string {
	return fmt.Sprintf("%v in %s: %s", ErrDamagedWAL, e.Segment, e.Problem)
}

// Unwrap returns ErrDamagedWAL and Err, for errors.Is.
func (e *DamageError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrDamagedWAL}
	}
	return []error{ErrDamagedWAL, e.Err}
}

var errVerifierClosed = errors.New("wal: write to a closed SegmentVerifier")

// verifyState says what the next bytes of the segment hold.
type verifyState uint8

const (
	inRecords      verifyState = iota // records, each starting MAXALIGNed
	inContinuation                    // the rest of a record begun in an earlier segment
	inRecord                          // the rest of a record begun in this segment
	afterSwitch                       // zeros: an XLOG_SWITCH record ended the segment's WAL
	afterEnd                          // unchecked bytes past the end of a .partial file's WAL
)

// openRecord is a record that continues on the next page.
type openRecord struct {
	lsn    LSN
	totLen uint32
	got    uint32 // bytes seen, page headers not counted
	hdr    [recordHeaderSize]byte
	crc    uint32 // of the bytes after the header seen so far
}

// SegmentVerifier checks, as its bytes are written to it, that a WAL segment
// is intact: that PostgreSQL, replaying it in archive recovery, would read
// every record it holds rather than stop early. This matters because the
// server takes a bad page header or record CRC for the end of WAL, and in
// archive recovery the end of WAL ends recovery and promotes the server.
//
// The checks follow PostgreSQL's xlogreader.c (XLogReaderValidatePageHeader,
// ValidXLogRecordHeader, ValidXLogRecord):
//
//   - the first page header is a long header that matches the segment's name
//     and size (ParseLongHeader and LongHeader.Check, without a system
//     identifier: callers that know it check it with Check);
//   - every later page has a short header with the same magic, only defined
//     info flags and no long header flag, the page's own address, and a
//     timeline not lower than the previous page's nor above the name's;
//   - a record's length is at least its 24-byte header and at most 1 GiB, its
//     resource manager exists, its prev-link is the previous record (or,
//     for the first record, lies before the segment), and its CRC32C is
//     correct for every record that ends in the segment;
//   - a record that continues onto a page finds the continuation flag there,
//     with the length it still misses; a page that continues no record has
//     no continuation flag; the overwrite flag abandons the record pending
//     from the previous page, as after a crash. A segment that starts with
//     the rest of a record from the previous segment is skipped to where it
//     ends, across as many pages as it takes, checking each page's length;
//   - the WAL goes on to the end of the segment: a record header of zeros
//     before it, without an XLOG_SWITCH record, is "WAL ends early". After a
//     switch record every byte must be zero, as PostgreSQL writes it (it
//     zeroes whole pages, headers included). The server never reads those
//     bytes, but they are never anything else either, so a byte that is not
//     zero there means the file is not what the server wrote. A switch
//     record can also straddle two segments; the second then holds its last
//     8 or 16 bytes, then zeros.
//
// Bytes PostgreSQL writes as zeros and never reads (the padding in page
// headers, the alignment padding between records) must be zeros too, and
// xlp_rem_len must be 0 on a page without the continuation flag, for the
// same reason. Bytes that cannot be checked without the neighbouring
// segments are not: the rest of a record that began in the previous segment
// (only its length is checked), and a record that runs past the end of the
// segment (only its header and its pages in this segment). Nor is what
// records hold beyond their CRC: the payload of XLOG_OVERWRITE_CONTRECORD,
// which replay compares with the abandoned record, is not decoded.
//
// A .partial file (Kind Partial) is the last segment of an old timeline,
// which the server wrote only up to the switch point: past it the file holds
// zeros or stale WAL of the recycled file. Its WAL is checked as a segment's
// up to where it ends (a record header of zeros, or a page of zeros or with
// another page's address where a record may start), and the rest is not
// checked, so damage that looks like that end goes unnoticed. The file must
// still be a whole segment long. The server never asks restore_command for
// a .partial file; it is verified for tools that restore one by hand.
//
// The layout is that of little-endian servers with MAXALIGN 8, which is
// every 64-bit platform.
//
// Write may return an error as soon as it has seen damage; every later call
// returns the same error. The verifier keeps one page of state, whatever the
// record lengths, and verifies the same bytes the same way however they are
// split into writes.
type SegmentVerifier struct {
	name    Name
	segSize int64
	start   LSN   // the segment's first LSN
	err     error // the verdict once known
	closed  bool

	n      int64 // bytes written
	head   [LongHeaderSize]byte
	blcksz int
	buf    []byte // the page being assembled, when writes split pages
	page   int64  // index of the next page to check

	magic   uint16
	version pgver.Major
	tli     TimeLine // of the last page checked

	crcs     *headerTable
	crc32c   *crc32.Table // castagnoli()
	state    verifyState
	rec      openRecord // in state inRecord
	contLeft uint32     // in state inContinuation: bytes of the record still to skip
	prev     LSN        // the last complete record, when havePrev
	havePrev bool
	// switchTail is set when the segment began with the last 8 or 16 bytes
	// of an XLOG_SWITCH record: a switch record can straddle two segments,
	// and the second is then zeros after its end.
	switchTail bool

	// For tests.
	records int   // records whose CRC was checked
	contEnd int64 // offset where the continuation that opened the segment ends
	endOff  int64 // offset of the end of the switch record, or of a .partial's WAL
}

// NewSegmentVerifier returns a verifier for the segment named n (a Segment or
// Partial name, see ParseName), in a cluster with segments of segSize bytes.
// An invalid name or size makes Write and Close return an error wrapping
// ErrInvalidName.
func NewSegmentVerifier(n Name, segSize int64) *SegmentVerifier {
	v := &SegmentVerifier{name: n, segSize: segSize, contEnd: -1, endOff: -1, crcs: headerTables(), crc32c: castagnoli()}
	if n.Kind != Segment && n.Kind != Partial {
		v.err = fmt.Errorf("%w %s: a %s file is not WAL to verify", ErrInvalidName, quote(n.String()), n.Kind)
		return v
	}
	seg, err := n.SegNo(segSize)
	if err != nil {
		v.err = err
		return v
	}
	v.start = seg.Start(segSize)
	return v
}

// VerifySegment verifies a whole segment in memory, as a SegmentVerifier
// does. The segment size is the one its first page header states, and b must
// hold exactly that many bytes.
func VerifySegment(n Name, b []byte) error {
	segSize := int64(MinSegmentSize)
	if h, err := ParseLongHeader(b); err == nil {
		segSize = int64(h.SegmentSize)
	} else if n.Kind == Segment || n.Kind == Partial {
		return &DamageError{Segment: n.String(), Problem: "first page header: " + err.Error(), Err: err}
	}
	v := NewSegmentVerifier(n, segSize)
	if _, err := v.Write(b); err != nil {
		return err
	}
	return v.Close()
}

// Write verifies the next bytes of the segment. It consumes all of p unless
// it returns an error: the damage found, or a segment longer than its size.
func (v *SegmentVerifier) Write(p []byte) (int, error) {
	if v.closed {
		return 0, errVerifierClosed
	}
	if v.err != nil {
		return 0, v.err
	}
	tooLong := int64(len(p)) > v.segSize-v.n
	if tooLong {
		p = p[:v.segSize-v.n]
	}
	done := 0
	for len(p) > 0 {
		k, err := v.write(p)
		done += k
		p = p[k:]
		if err != nil {
			v.err = err
			return done, err
		}
	}
	if tooLong {
		v.err = v.damage(v.start+LSN(v.segSize), ErrSegmentSize,
			"the file goes on past the end of the segment at %s: want %s", v.start+LSN(v.segSize), formatSize(v.segSize))
		return done, v.err
	}
	return done, nil
}

// write consumes bytes of p up to the next page boundary, checking the page
// when it is complete.
func (v *SegmentVerifier) write(p []byte) (int, error) {
	if v.blcksz == 0 {
		// The page size is in the first page header.
		if v.n == 0 && len(p) >= LongHeaderSize {
			return 0, v.begin(p)
		}
		k := copy(v.head[v.n:], p)
		v.n += int64(k)
		if v.n < LongHeaderSize {
			return k, nil
		}
		if err := v.begin(v.head[:]); err != nil {
			return k, err
		}
		v.buf = append(make([]byte, 0, v.blcksz), v.head[:]...)
		return k, nil
	}
	if len(v.buf) == 0 && len(p) >= v.blcksz {
		// Whole pages are checked where they are, without a copy.
		v.n += int64(v.blcksz)
		return v.blcksz, v.checkPage(p[:v.blcksz])
	}
	if v.buf == nil {
		v.buf = make([]byte, 0, v.blcksz)
	}
	k := min(v.blcksz-len(v.buf), len(p))
	v.buf = append(v.buf, p[:k]...)
	v.n += int64(k)
	if len(v.buf) < v.blcksz {
		return k, nil
	}
	err := v.checkPage(v.buf)
	v.buf = v.buf[:0]
	return k, err
}

// Close returns the verdict once the whole segment has been written: nil if
// it is intact, an error wrapping ErrDamagedWAL if not (and ErrSegmentSize
// too if the segment is shorter than its size).
func (v *SegmentVerifier) Close() error {
	if !v.closed {
		v.closed = true
		if v.err == nil && v.n != v.segSize {
			end := v.start + LSN(v.n)
			v.err = v.damage(end, ErrSegmentSize, "the file ends at %s after %d bytes: want %s", end, v.n, formatSize(v.segSize))
		}
	}
	return v.err
}

func (v *SegmentVerifier) damage(lsn LSN, err error, format string, args ...any) error {
	return &DamageError{Segment: v.name.String(), LSN: lsn, Problem: fmt.Sprintf(format, args...), Err: err}
}

// begin checks the long header at the start of b, the first page.
func (v *SegmentVerifier) begin(b []byte) error {
	h, err := ParseLongHeader(b)
	if err == nil {
		err = h.Check(v.name, 0, v.segSize)
	}
	if err != nil {
		return v.damage(v.start, err, "first page header: %v", err)
	}
	v.blcksz = int(h.BlockSize)
	v.magic = h.Magic
	v.version = pgver.Major(h.PGVersion())
	v.tli = h.TLI
	return nil
}

// checkPage checks the next page of the segment, p, and the records on it.
func (v *SegmentVerifier) checkPage(p []byte) error {
	off := v.page * int64(v.blcksz)
	lsn := v.start + LSN(off)
	first := v.page == 0
	v.page++
	switch v.state {
	case afterEnd:
		return nil
	case afterSwitch:
		return v.checkZeros(p, 0, lsn)
	}
	le := binary.LittleEndian
	info, remLen := le.Uint16(p[2:]), le.Uint32(p[16:])
	pos := LongHeaderSize
	if !first {
		if v.name.Kind == Partial && v.state == inRecords && partialEnds(p, v.magic, lsn) {
			v.state, v.endOff = afterEnd, off
			return nil
		}
		if err := v.checkShortHeader(p, lsn); err != nil {
			return err
		}
		pos = shortHeaderSize
	}
	if le.Uint32(p[20:]) != 0 {
		return v.damage(lsn, nil, "page header at %s: padding bytes %08X are not zero", lsn, le.Uint32(p[20:]))
	}
	cont := info&InfoFirstIsContRecord != 0
	overwrite := info&InfoFirstIsOverwriteContRecord != 0
	switch {
	case cont && remLen == 0:
		return v.damage(lsn, nil, "page header at %s: continuation flag with a remaining length of 0", lsn)
	case !cont && remLen != 0:
		return v.damage(lsn, nil, "page header at %s: remaining length %d without the continuation flag", lsn, remLen)
	case cont && overwrite:
		// xlogreader.c restarts at an overwrite flag, then refuses the
		// continuation flag where a record should start.
		return v.damage(lsn, nil, "page header at %s: both the continuation and the overwrite flag", lsn)
	}

	if first && cont {
		v.state, v.contLeft = inContinuation, remLen
	} else {
		switch v.state {
		case inRecord, inContinuation:
			if overwrite {
				// The record was cut short by a crash; the server wrote new
				// WAL from this page on. The prev-link of the next record is
				// the record before the abandoned one.
				v.state = inRecords
				break
			}
			need := v.contLeft
			if v.state == inRecord {
				need = v.rec.totLen - v.rec.got
			}
			if !cont {
				return v.damage(lsn, nil, "page at %s has no continuation flag, but %s needs %d more bytes", lsn, v.pending(), need)
			}
			if remLen != need {
				return v.damage(lsn, nil, "page at %s continues a record with %d bytes, but %s needs %d more", lsn, remLen, v.pending(), need)
			}
		case inRecords:
			if cont {
				return v.damage(lsn, nil, "page at %s has the continuation flag (%d bytes), but no record continues onto it", lsn, remLen)
			}
		}
	}

	if v.state == inRecord || v.state == inContinuation {
		var end int
		var err error
		if end, err = v.continueRecord(p, pos, first); err != nil || end < 0 {
			return err
		}
		if v.state == afterSwitch {
			return v.checkZeros(p, end, lsn)
		}
		if pos, err = v.checkAlignment(p, end, lsn); err != nil {
			return err
		}
	}
	return v.checkRecords(p, pos, lsn)
}

// pending names the record that continues onto the next page, for messages.
func (v *SegmentVerifier) pending() string {
	if v.state == inContinuation {
		return "the record continued from the previous segment"
	}
	return fmt.Sprintf("the record at %s", v.rec.lsn)
}

// checkShortHeader checks the header of a page other than the first.
func (v *SegmentVerifier) checkShortHeader(p []byte, lsn LSN) error {
	le := binary.LittleEndian
	magic, info := le.Uint16(p[0:]), le.Uint16(p[2:])
	tli, addr := TimeLine(le.Uint32(p[4:])), LSN(le.Uint64(p[8:]))
	if magic != v.magic {
		if bytes.Equal(p[:shortHeaderSize], zeros[:shortHeaderSize]) {
			if v.state == inRecord || v.state == inContinuation {
				return v.damage(lsn, nil, "page at %s is zeros, but %s continues onto it", lsn, v.pending())
			}
			return v.damage(lsn, nil, "WAL ends early at %s: the page header there is zeros", lsn)
		}
		return v.damage(lsn, nil, "page header at %s: magic %04X, want %04X", lsn, magic, v.magic)
	}
	if info&^InfoAllFlags != 0 {
		return v.damage(lsn, nil, "page header at %s: info %04X has undefined flag bits", lsn, info)
	}
	if info&InfoLongHeader != 0 {
		return v.damage(lsn, nil, "page header at %s: info %04X has the long header flag, which only the first page has", lsn, info)
	}
	if addr != lsn {
		return v.damage(lsn, nil, "page header at %s: unexpected page address %s (stale WAL of a recycled file?)", lsn, addr)
	}
	if tli < v.tli {
		return v.damage(lsn, nil, "page header at %s: timeline %d after timeline %d", lsn, tli, v.tli)
	}
	if tli > v.name.TLI {
		return v.damage(lsn, nil, "page header at %s: timeline %d is later than the segment's timeline %d", lsn, tli, v.name.TLI)
	}
	v.tli = tli
	return nil
}

// partialEnds reports whether page p of a .partial file, where a record may
// start, is past the end of its WAL: zeros, or a page of other WAL.
func partialEnds(p []byte, magic uint16, lsn LSN) bool {
	if bytes.Equal(p[:shortHeaderSize], zeros[:shortHeaderSize]) {
		return true
	}
	le := binary.LittleEndian
	return le.Uint16(p[0:]) == magic && LSN(le.Uint64(p[8:])) != lsn
}

// continueRecord consumes the part of the pending record or continuation
// that is on page p from pos on. It returns where that part ends, or -1 if
// it fills the page.
func (v *SegmentVerifier) continueRecord(p []byte, pos int, first bool) (int, error) {
	if v.state == inContinuation {
		n := int(min(v.contLeft, uint32(len(p)-pos)))
		end := pos + n
		v.contLeft -= uint32(n)
		if v.contLeft > 0 {
			return -1, nil
		}
		v.state, v.contEnd = inRecords, int64(v.page-1)*int64(v.blcksz)+int64(end)
		if first && (n == 8 || n == 16) {
			v.switchTail = isSwitchTail(p[pos:end], v.start)
		}
		return end, nil
	}
	r := &v.rec
	n := int(min(r.totLen-r.got, uint32(len(p)-pos)))
	b := p[pos : pos+n]
	if r.got < recordHeaderSize {
		k := copy(r.hdr[r.got:], b)
		r.got += uint32(k)
		b = b[k:]
		if r.got == recordHeaderSize {
			if err := v.checkHeader(r.lsn, r.hdr[:]); err != nil {
				return 0, err
			}
		}
	}
	r.crc = crc32.Update(r.crc, v.crc32c, b)
	r.got += uint32(len(b))
	if r.got < r.totLen {
		return -1, nil
	}
	v.state = inRecords
	// The CRC covers the data, then the header up to xl_crc.
	if err := v.endRecord(r.lsn, r.hdr[:], updateHeader(v.crcs, r.crc, r.hdr[:])); err != nil {
		return 0, err
	}
	if v.state == afterSwitch {
		v.endOff = int64(v.page-1)*int64(v.blcksz) + int64(pos+n)
	}
	return pos + n, nil
}

// isSwitchTail reports whether b, the last 8 or 16 bytes of a record, can
// be the end of an XLOG_SWITCH record's header: xl_info and xl_rmid, zero
// padding and, in 16 bytes, a prev-link before the segment.
func isSwitchTail(b []byte, start LSN) bool {
	h := b[len(b)-8:] // xl_info, xl_rmid, padding, xl_crc
	if h[0]&0xF0 != xlogSwitch || h[1] != rmXLog || h[2] != 0 || h[3] != 0 {
		return false
	}
	return len(b) == 8 || LSN(binary.LittleEndian.Uint64(b)) < start
}

// checkRecords checks the records that start on page p from pos on. This
// is where the time goes, so the common case, a valid record that ends on
// the page, takes one pass of comparisons and two CRC calls; the checks that
// fail are repeated by the functions that say why.
func (v *SegmentVerifier) checkRecords(p []byte, pos int, lsn LSN) error {
	le := binary.LittleEndian
	for pos < len(p) {
		recLSN := lsn + LSN(pos)
		if len(p)-pos < recordHeaderSize {
			// The header goes on on the next page; xl_tot_len is on this one.
			h := p[pos:]
			totLen := le.Uint32(h)
			if totLen == 0 && bytes.Equal(h, zeros[:len(h)]) {
				return v.walEnds(p, pos, lsn)
			}
			if err := v.checkLength(recLSN, totLen); err != nil {
				return err
			}
			v.open(recLSN, totLen, h, 0)
			return nil
		}
		h := p[pos : pos+recordHeaderSize]
		totLen := le.Uint32(h)
		if !v.havePrev || LSN(le.Uint64(h[8:])) != v.prev || totLen-recordHeaderSize > maxRecordLen-recordHeaderSize ||
			(h[17] > maxBuiltinRmgr && (h[17] < minCustomRmgr || !v.version.CustomRmgrs())) {
			if totLen == 0 && bytes.Equal(h, zeros[:recordHeaderSize]) {
				return v.walEnds(p, pos, lsn)
			}
			if err := v.checkHeader(recLSN, h); err != nil {
				return err
			}
		}
		end := pos + int(totLen)
		if end > len(p) {
			v.open(recLSN, totLen, h, crc32.Update(0, v.crc32c, p[pos+recordHeaderSize:]))
			v.rec.got = uint32(len(p) - pos)
			return nil
		}
		sum := updateHeader(v.crcs, crc32.Update(0, v.crc32c, p[pos+recordHeaderSize:end]), h)
		if sum != le.Uint32(h[recordCRCOffset:]) || (h[17] == rmXLog && h[16]&0xF0 == xlogSwitch) {
			if err := v.endRecord(recLSN, h, sum); err != nil {
				return err
			}
			if v.state == afterSwitch {
				v.endOff = int64(v.page-1)*int64(v.blcksz) + int64(end)
				return v.checkZeros(p, end, lsn)
			}
		} else {
			v.records++
			v.prev, v.havePrev = recLSN, true
			v.switchTail = false
		}
		// The alignment padding after the record is zeros: end is 8-aligned
		// but for the padding's up to 7 bytes, and pages are 8-aligned.
		if pad := end & (maxAlign - 1); pad != 0 {
			if le.Uint64(p[end-pad:])>>(8*pad) != 0 {
				return v.damage(lsn+LSN(end), nil, "alignment padding at %s after a record is not zeros", lsn+LSN(end))
			}
			end += maxAlign - pad
		}
		pos = end
	}
	return nil
}

// open makes the record at lsn, whose first bytes h are on this page, the
// one pending for the next page.
func (v *SegmentVerifier) open(lsn LSN, totLen uint32, h []byte, crc uint32) {
	v.state = inRecord
	v.rec = openRecord{lsn: lsn, totLen: totLen, got: uint32(len(h)), crc: crc}
	copy(v.rec.hdr[:], h)
}

// walEnds handles a record header of zeros at pos on page p.
func (v *SegmentVerifier) walEnds(p []byte, pos int, lsn LSN) error {
	off := int64(v.page-1)*int64(v.blcksz) + int64(pos)
	switch {
	case v.switchTail:
		v.state, v.endOff = afterSwitch, off
		return v.checkZeros(p, pos, lsn)
	case v.name.Kind == Partial:
		v.state, v.endOff = afterEnd, off
		return nil
	}
	return v.damage(lsn+LSN(pos), nil, "WAL ends early at %s: the record header there is zeros, and no switch record came before it", lsn+LSN(pos))
}

// checkLength checks xl_tot_len, all a record's header tells before the
// header is whole.
func (v *SegmentVerifier) checkLength(lsn LSN, totLen uint32) error {
	if totLen < recordHeaderSize {
		return v.damage(lsn, nil, "record at %s: invalid length %d, want at least %d", lsn, totLen, recordHeaderSize)
	}
	if totLen > maxRecordLen {
		return v.damage(lsn, nil, "record at %s: length %d is more than the 1 GiB a server can read", lsn, totLen)
	}
	return nil
}

// checkHeader checks a record's whole header, h, as ValidXLogRecordHeader.
func (v *SegmentVerifier) checkHeader(lsn LSN, h []byte) error {
	if err := v.checkLength(lsn, binary.LittleEndian.Uint32(h)); err != nil {
		return err
	}
	if rmid := h[17]; rmid > maxBuiltinRmgr && (!v.version.CustomRmgrs() || rmid < minCustomRmgr) {
		return v.damage(lsn, nil, "record at %s: invalid resource manager ID %d", lsn, rmid)
	}
	prev := LSN(binary.LittleEndian.Uint64(h[8:]))
	if v.havePrev && prev != v.prev {
		return v.damage(lsn, nil, "record at %s: prev-link %s, want %s", lsn, prev, v.prev)
	}
	if !v.havePrev && prev >= v.start {
		// The first record that starts in a segment follows one that
		// started in an earlier segment.
		return v.damage(lsn, nil, "record at %s: prev-link %s, want one before the segment's start %s", lsn, prev, v.start)
	}
	return nil
}

// endRecord checks sum, the CRC of the complete record at lsn with header
// h, as ValidXLogRecord, and makes the record the previous one.
func (v *SegmentVerifier) endRecord(lsn LSN, h []byte, sum uint32) error {
	if want := binary.LittleEndian.Uint32(h[recordCRCOffset:]); sum != want {
		return v.damage(lsn, nil, "record at %s: incorrect CRC %08X, computed %08X", lsn, want, sum)
	}
	v.records++
	v.prev, v.havePrev = lsn, true
	v.switchTail = false
	if h[17] == rmXLog && h[16]&0xF0 == xlogSwitch {
		v.state = afterSwitch
	}
	return nil
}

// checkAlignment checks that the bytes from end, where a record ends on page
// p, to where the next record starts are zeros, and returns that start.
func (v *SegmentVerifier) checkAlignment(p []byte, end int, lsn LSN) (int, error) {
	next := min((end+maxAlign-1)&^(maxAlign-1), len(p))
	if !bytes.Equal(p[end:next], zeros[:next-end]) {
		return 0, v.damage(lsn+LSN(end), nil, "alignment padding at %s after a record is not zeros", lsn+LSN(end))
	}
	return next, nil
}

// checkZeros checks that page p is zeros from pos on, as PostgreSQL writes
// the rest of a segment after a switch record.
func (v *SegmentVerifier) checkZeros(p []byte, pos int, lsn LSN) error {
	if bytes.Equal(p[pos:], zeros[:len(p)-pos]) {
		return nil
	}
	i := pos
	for p[i] == 0 {
		i++
	}
	return v.damage(lsn+LSN(i), nil, "byte at %s after the switch record is %02X, but PostgreSQL fills the rest of the segment with zeros", lsn+LSN(i), p[i])
}
