package backup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/walship/walship/internal/pgver"
)

// recoveryTargets are every recovery_target setting. Restore sets the ones
// not chosen to ” so that one left in postgresql.conf, or in the backup's
// postgresql.auto.conf, cannot add a second target (the server refuses to
// start with two).
var recoveryTargets = []string{"recovery_target", "recovery_target_lsn", "recovery_target_name",
	"recovery_target_time", "recovery_target_xid"}

// recoverySettings returns the lines Restore appends to
// postgresql.auto.conf. The server applies the last occurrence of a
// setting, so they override the backup's own.
func recoverySettings(m Meta, opts RestoreOptions, now time.Time) []string {
	lines := []string{
		fmt.Sprintf("# Recovery settings written by walship restore of backup %s at %s.", m.ID, now.UTC().Format(time.RFC3339)),
		"# Remove them once recovery is over.",
		"restore_command = " + ConfQuote(opts.RestoreCommand),
		"recovery_end_command = " + ConfQuote(opts.RecoveryEndCommand),
		// A standby's cleanup command would remove WAL from the archive.
		"archive_cleanup_command = ''",
	}
	t := opts.Target
	// The empty ones first: the server checks for a second target as it
	// assigns each, in order.
	for _, name := range recoveryTargets {
		if name != targetSetting(t.Kind) {
			lines = append(lines, name+" = ''")
		}
	}
	if t.Kind != TargetNone {
		lines = append(lines, targetSetting(t.Kind)+" = "+ConfQuote(t.Value))
	}
	if t.Action != "" {
		lines = append(lines, "recovery_target_action = "+ConfQuote(t.Action))
	}
	if t.Timeline != "" {
		lines = append(lines, "recovery_target_timeline = "+ConfQuote(t.Timeline))
	}
	if opts.Standby && pgver.FromVersionNum(m.PGVersion).RecoveryPrefetch() {
		lines = append(lines, "# The read-ahead would wait in restore_command with decoded WAL unapplied.",
			"recovery_prefetch = off")
	}
	return lines
}

func targetSetting(kind string) string {
	switch kind {
	case TargetNone:
		return ""
	case TargetImmediate:
		return "recovery_target"
	}
	return "recovery_target_" + kind
}

// writeRecovery appends the recovery settings to postgresql.auto.conf and
// leaves the signal file opts.Signal names, and only that one: a signal
// file of the backup's source (standby.signal of a backup taken from a
// standby) or of an earlier restore goes.
func writeRecovery(pgdata string, m Meta, opts RestoreOptions) error {
	p := filepath.Join(pgdata, "postgresql.auto.conf")
	old, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	lines := recoverySettings(m, opts, time.Now())
	kept := withoutOwnSettings(string(old), lines)
	if len(kept) > 0 && !strings.HasSuffix(kept, "\n") {
		kept += "\n"
	}
	b := []byte(kept + strings.Join(lines, "\n") + "\n")
	if err := writeFileSync(p, b); err != nil {
		return fmt.Errorf("write recovery settings: %w", err)
	}
	keep := ""
	switch opts.Signal {
	case "", SignalRecovery:
		keep = "recovery.signal"
	case SignalStandby:
		keep = "standby.signal"
	}
	for _, f := range []string{"recovery.signal", "standby.signal"} {
		if f == keep {
			continue
		}
		if err := os.Remove(filepath.Join(pgdata, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if keep == "" {
		return nil
	}
	return writeFileSync(filepath.Join(pgdata, keep), nil)
}

// ownComments start the comment lines recoverySettings writes; the first
// one heads its block.
var ownComments = []string{"# Recovery settings written by walship restore", "# Remove them once recovery is over.",
	"# The read-ahead would wait in restore_command"}

// ownSettings are the names recoverySettings may write.
var ownSettings = append([]string{"restore_command", "recovery_end_command", "archive_cleanup_command",
	"recovery_target_action", "recovery_target_timeline", "recovery_prefetch"}, recoveryTargets...)

// withoutOwnSettings returns conf, the text of a postgresql.auto.conf,
// without what an earlier walship restore wrote there: each of its blocks
// (its heading comment and the comments and settings of its own that
// follow), and every other line setting a name that lines set again. The
// server applies the last line of a name, so the earlier ones are dead, but
// a data directory restored from a backup of a restored cluster would
// otherwise carry one block more per generation, and a setting of the
// older block that the new one leaves out (a recovery_target_action) would
// still apply. Everything else stays as it is.
func withoutOwnSettings(conf string, lines []string) string {
	set := map[string]bool{}
	for _, l := range lines {
		if n := settingName(l); n != "" {
			set[n] = true
		}
	}
	var b strings.Builder
	inBlock := false
	for l := range strings.SplitAfterSeq(conf, "\n") {
		trimmed := strings.TrimSpace(l)
		name := settingName(trimmed)
		comment := slices.ContainsFunc(ownComments, func(c string) bool { return strings.HasPrefix(trimmed, c) })
		switch {
		case strings.HasPrefix(trimmed, ownComments[0]):
			inBlock = true
		case inBlock && (comment || slices.Contains(ownSettings, name)):
		default:
			inBlock = false
			if !set[name] && !comment {
				b.WriteString(l)
			}
		}
	}
	return b.String()
}

// settingName returns the lower-case name a postgresql.conf line sets
// ("name = value", "name value" or "name=value"), or "" for a comment, a
// blank line or anything else.
func settingName(line string) string {
	line = strings.TrimSpace(line)
	end := strings.IndexFunc(line, func(r rune) bool {
		return !(r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})
	if end <= 0 {
		return ""
	}
	rest := strings.TrimLeft(line[end:], " \t")
	if rest == line[end:] && !strings.HasPrefix(rest, "=") && rest != "" {
		return "" // "name" must be followed by blanks or "="
	}
	if rest == "" || strings.HasPrefix(rest, "#") {
		return ""
	}
	return strings.ToLower(line[:end])
}

// ConfQuote quotes s as a postgresql.conf string value: quotes doubled,
// backslashes escaped, since the server reads backslash escapes there, and
// line ends written as \n and \r, since a string cannot span lines.
func ConfQuote(s string) string {
	s = confEscaper.Replace(s)
	return "'" + s + "'"
}

var confEscaper = strings.NewReplacer(`\`, `\\`, "'", "''", "\n", `\n`, "\r", `\r`)

// ShellQuote quotes s for the shell that runs restore_command, and doubles
// % signs, which the server would replace.
func ShellQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=@,+%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
