// Package pgver holds what walship must know about each PostgreSQL major
// version: the one table of the majors it knows, and a method for each
// behaviour that differs between them. Code elsewhere asks a Major what it
// does ("m.RecoveryPrefetch()") instead of comparing version numbers, so
// that supporting a new major is a line in the table and a look at the
// methods below, not a hunt through the tree.
//
// A major newer than the table is unknown: CheckKnown refuses it with a
// message that names the newest known one, and the WAL reader refuses its
// page magic. Guessing would misparse its WAL or its backup protocol
// silently.
package pgver

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Major is a PostgreSQL major version: 13, 14, … 18.
type Major int

// majors is every released major walship knows, oldest first, with the
// XLOG_PAGE_MAGIC its WAL pages start with (xlog_internal.h). Adding a
// major (PostgreSQL 19) is one line here, after checking each method below
// against its release notes.
var majors = []struct {
	major Major
	magic uint16
}{
	{12, 0xD101},
	{13, 0xD106},
	{14, 0xD10D},
	{15, 0xD110},
	{16, 0xD113},
	{17, 0xD116},
	{18, 0xD118},
}

// Oldest and Newest bound the majors walship knows.
var (
	Oldest = majors[0].major
	Newest = majors[len(majors)-1].major
)

// OldestBackup is the oldest major whose base backups walship takes and
// restores: backup manifests came with PostgreSQL 13.
const OldestBackup Major = 13

// ErrUnknown says a server or a WAL file is of a major walship does not
// know.
var ErrUnknown = errors.New("unknown PostgreSQL major version")

// Majors returns every major walship knows, oldest first.
func Majors() []Major {
	out := make([]Major, len(majors))
	for i, m := range majors {
		out[i] = m.major
	}
	return out
}

// FromVersionNum returns the major of a server_version_num: 150004 → 15,
// 180001 → 18.
func FromVersionNum(num int) Major { return Major(num / 10000) }

// Parse reads a major as PG_VERSION holds it ("15") or a server_version
// starts ("15.4", "16beta2", "17.2 (Debian 17.2-1)"). Versions before 10
// ("9.6") come out as 9.
func Parse(s string) (Major, error) {
	s = strings.TrimSpace(s)
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(s[:end])
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("PostgreSQL version %q", s)
	}
	return Major(n), nil
}

// Known reports whether m is in the table.
func (m Major) Known() bool {
	_, ok := m.Magic()
	return ok
}

// CheckKnown returns nil for a known major, and otherwise an error wrapping
// ErrUnknown that tells the user what to do. what names the action
// ("walship backup"), for the message.
func (m Major) CheckKnown(what string) error {
	switch {
	case m.Known():
		return nil
	case m > Newest:
		return fmt.Errorf("%w: %s: the server runs PostgreSQL %d, newer than this walship knows (%d to %d): "+
			"upgrade walship; guessing would risk misreading its WAL or its backup protocol", ErrUnknown, what, m, Oldest, Newest)
	default:
		return fmt.Errorf("%w: %s: the server runs PostgreSQL %d; walship supports %d to %d", ErrUnknown, what, m, Oldest, Newest)
	}
}

// CheckBackup returns nil when walship backup and restore support m.
func (m Major) CheckBackup() error {
	if err := m.CheckKnown("walship backup"); err != nil {
		return err
	}
	if m < OldestBackup {
		return fmt.Errorf("walship backup needs PostgreSQL %d or later (backup manifests), the server runs %d: use pg_basebackup",
			OldestBackup, m)
	}
	return nil
}

// Magic returns the XLOG_PAGE_MAGIC of m's WAL, and false for a major not
// in the table.
func (m Major) Magic() (uint16, bool) {
	for _, e := range majors {
		if e.major == m {
			return e.magic, true
		}
	}
	return 0, false
}

// FromMagic returns the major whose WAL pages start with magic, and false
// for a value not in the table.
func FromMagic(magic uint16) (Major, bool) {
	for _, e := range majors {
		if e.magic == magic {
			return e.major, true
		}
	}
	return 0, false
}

// NewerMagic reports whether magic looks like the page magic of a major
// newer than Newest: PostgreSQL counts its magic up from 0xD101 with each
// release that changes the WAL format.
func NewerMagic(magic uint16) bool {
	newest, _ := Newest.Magic()
	return magic > newest && magic>>8 == 0xD1
}

// settings are the server settings walship writes or recommends that not
// every major has: the first major with each, and the first without it (0:
// still there). A server refuses to start with a setting it does not know
// in postgresql.conf.
var settings = map[string]struct{ since, until Major }{
	"recovery_prefetch":    {15, 0},
	"promote_trigger_file": {12, 16},
}

// HasSetting reports whether m knows the setting name, of those in the
// settings table; any other name is taken to exist.
func (m Major) HasSetting(name string) bool {
	s, ok := settings[name]
	if !ok {
		return true
	}
	return m >= s.since && (s.until == 0 || m < s.until)
}

// LegacyBaseBackup reports whether BASE_BACKUP takes PostgreSQL 13 and
// 14's options (LABEL 'x' FAST NOWAIT MANIFEST 'yes', no parentheses) and
// answers with one COPY OUT per archive, without tar end blocks, then one
// for the manifest, instead of 15's single COPY OUT of typed messages.
func (m Major) LegacyBaseBackup() bool { return m < 15 }

// ServerCompression reports whether BASE_BACKUP can compress on the server
// (COMPRESSION 'zstd', PostgreSQL 15).
func (m Major) ServerCompression() bool { return m >= 15 }

// ReportsHotStandby reports whether the server reports in_hot_standby at
// connection start (PostgreSQL 14).
func (m Major) ReportsHotStandby() bool { return m >= 14 }

// RecoveryPrefetch reports whether recovery reads WAL ahead of replay and
// asks restore_command for the next segment early: recovery_prefetch,
// PostgreSQL 15, on ("try") by default.
func (m Major) RecoveryPrefetch() bool { return m.HasSetting("recovery_prefetch") }

// PromoteTriggerFile reports whether the server has promote_trigger_file
// (removed in PostgreSQL 16; pg_promote() works on every major).
func (m Major) PromoteTriggerFile() bool { return m.HasSetting("promote_trigger_file") }

// WALFileNameAtBoundaryIsNext reports whether pg_walfile_name and
// pg_walfile_name_offset, given an LSN at a segment boundary, name the
// segment that starts there (PostgreSQL 17) instead of the one that ends
// there with offset 0 (16 and older).
func (m Major) WALFileNameAtBoundaryIsNext() bool { return m >= 17 }

// ManifestVersion is the PostgreSQL-Backup-Manifest-Version the server
// writes: 1, or 2 from PostgreSQL 17, which adds System-Identifier.
func (m Major) ManifestVersion() int {
	if m >= 17 {
		return 2
	}
	return 1
}

// IncrementalBackup reports whether BASE_BACKUP takes INCREMENTAL after
// an UPLOAD_MANIFEST of the prior backup's manifest (PostgreSQL 17, with
// summarize_wal on).
func (m Major) IncrementalBackup() bool { return m >= 17 }

// CustomRmgrs reports whether WAL may hold records of custom resource
// managers (ids 128 to 255, PostgreSQL 15).
func (m Major) CustomRmgrs() bool { return m >= 15 }

// String returns "PostgreSQL 15".
func (m Major) String() string { return "PostgreSQL " + strconv.Itoa(int(m)) }
