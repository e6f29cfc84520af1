package backup

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/walship/walship/wal"
)

// Recovery target kinds, as PostgreSQL names their settings
// (recovery_target_<kind>); Immediate is recovery_target = 'immediate'.
const (
	TargetNone      = ""
	TargetTime      = "time"
	TargetLSN       = "lsn"
	TargetXID       = "xid"
	TargetName      = "name"
	TargetImmediate = "immediate"
)

// Target is where recovery stops, and what the server does there.
type Target struct {
	Kind  string    // one of the Target... constants
	Value string    // written to the setting as it is
	Time  time.Time // TargetTime: Value parsed, to pick a backup
	LSN   wal.LSN   // TargetLSN: Value parsed

	Action   string // recovery_target_action: promote, pause or shutdown; "" leaves the server's default (pause)
	Timeline string // recovery_target_timeline: latest, current or a number; "" leaves the default (latest)
}

// NewTarget checks a target given on the command line and parses what
// picking a backup needs.
func NewTarget(kind, value, action, timeline string) (Target, error) {
	t := Target{Kind: kind, Value: value, Action: action, Timeline: timeline}
	var err error
	switch kind {
	case TargetNone:
	case TargetImmediate:
		t.Value = "immediate"
	case TargetTime:
		// Written as the server prints a timestamptz in UTC, which every
		// version reads: "2026-12-01T18:40:50.888368Z", which ParseTime
		// takes, is refused by PostgreSQL 15's recovery_target_time.
		t.Time, err = ParseTime(value)
		t.Value = FormatTime(t.Time)
	case TargetLSN:
		t.LSN, err = wal.ParseLSN(value)
	case TargetXID:
		if _, perr := strconv.ParseUint(value, 10, 64); perr != nil {
			err = fmt.Errorf("transaction id %q: want a number, as txid_current() shows", value)
		}
	case TargetName:
		if value == "" || len(value) >= 64 {
			err = fmt.Errorf("restore point name %q: want 1 to 63 bytes", value)
		}
	default:
		err = fmt.Errorf("unknown recovery target %q", kind)
	}
	if err != nil {
		return Target{}, err
	}
	switch action {
	case "", "promote", "pause", "shutdown":
	default:
		return Target{}, fmt.Errorf("target action %q: use promote, pause or shutdown", action)
	}
	if action != "" && kind == TargetNone {
		return Target{}, fmt.Errorf("a target action needs a recovery target")
	}
	switch timeline {
	case "", "latest", "current":
	default:
		if n, err := strconv.ParseUint(timeline, 10, 32); err != nil || n == 0 {
			return Target{}, fmt.Errorf("target timeline %q: use latest, current or a timeline number", timeline)
		}
	}
	return t, nil
}

// timeLayouts are the forms ParseTime reads: what clock_timestamp() and
// now() print, with or without fractions or seconds, and ISO 8601 with a T,
// a Z or an offset. Each names its time zone.
var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999 UTC", // literally UTC: Go guesses at other abbreviations
	"2006-01-02 15:04Z07:00",
	"2006-01-02 15:04Z07",
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z07",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04Z07",
}

// FormatTime writes t as PostgreSQL prints a timestamptz with TimeZone UTC,
// to the microsecond (the server's precision; finer digits are dropped,
// never rounded up past the time given).
func FormatTime(t time.Time) string {
	return t.UTC().Truncate(time.Microsecond).Format("2006-01-02 15:04:05.999999") + "+00"
}

// ParseTime parses a recovery target time. It must name its time zone:
// without one the server would read it in its own TimeZone, and walship
// might pick a backup that ends after the target.
//
// It also takes seconds since the epoch, as "@1764614450" or
// "1764614450.25" (ten digits or more, so that no date or year reads as
// one).
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.Truncate(time.Microsecond), nil
		}
	}
	if t, ok := parseEpoch(s); ok {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("target time %q: want a time with its zone, like 2026-11-22 01:15:00+00 or 2026-11-22T01:15:00Z, or seconds since the epoch (@1764614450)", s)
}

// parseEpoch parses seconds since the epoch, with an optional "@" and
// fraction.
func parseEpoch(s string) (time.Time, bool) {
	digits := strings.TrimPrefix(s, "@")
	whole, frac, _ := strings.Cut(digits, ".")
	if len(whole) < 10 || (len(whole) > 12) || strings.Trim(whole, "0123456789") != "" || strings.Trim(frac, "0123456789") != "" {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	var ns int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		ns, _ = strconv.ParseInt(frac, 10, 64)
	}
	return time.Unix(sec, ns).UTC().Truncate(time.Microsecond), true
}

// Choose picks the backup to restore from backups (oldest first): the one
// named id; or, for id "" or "latest", the newest that ends before a time or
// LSN target, or the newest of all for other targets. Which backup precedes
// a transaction id or a restore point cannot be known from the archive:
// name one with id when the newest is too recent.
func Choose(backups []Meta, id string, t Target) (Meta, error) {
	if id != "" && id != "latest" {
		for _, m := range backups {
			if m.ID == id {
				return m, nil
			}
		}
		return Meta{}, fmt.Errorf("%w with id %s: walship info lists them", ErrNoBackup, id)
	}
	if len(backups) == 0 {
		return Meta{}, fmt.Errorf("%w in the archive: take one with walship backup", ErrNoBackup)
	}
	for i := len(backups) - 1; i >= 0; i-- {
		m := backups[i]
		switch {
		case t.Kind == TargetTime && !m.StopTime.Before(t.Time):
		case t.Kind == TargetLSN && m.StopLSN > t.LSN:
		default:
			return m, nil
		}
	}
	return Meta{}, fmt.Errorf("%w ends before the target %s (the oldest, %s, ends at %s, LSN %s)",
		ErrNoBackup, t.Value, backups[0].ID, backups[0].StopTime.Format(time.RFC3339), backups[0].StopLSN)
}
