package backup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
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
	if opts.Standby && m.PGVersion >= 150000 {
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
	if len(old) > 0 && old[len(old)-1] != '\n' {
		old = append(old, '\n')
	}
	b := append(old, strings.Join(recoverySettings(m, opts, time.Now()), "\n")+"\n"...)
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
