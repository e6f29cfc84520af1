package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every way a restore command line can fail before the command runs must
// stop recovery (exit > 125): exit 1 or 2 reads as "not found", and a
// pg_standby-mode standby promotes on it.
func TestRestoreCommandLineErrorsStopRecovery(t *testing.T) {
	unsetConfigEnv(t)
	arch, _, _ := archiveWith(t)
	seg, dest := "000000010000000000000004", filepath.Join(t.TempDir(), "RECOVERYXLOG")
	unreadable := filepath.Join(t.TempDir(), "conf-dir") // a directory: read fails
	if err := os.Mkdir(unreadable, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"misplaced --archive", nil, []string{"--archive", arch, "wait", seg, dest}},
		{"unknown global flag", nil, []string{"--bogus", "wait", "--archive", arch, seg, dest}},
		{"unknown global flag, fetch", nil, []string{"--bogus", "fetch", "--archive", arch, seg, dest}},
		{"global flag without value", nil, []string{"wait", "--archive"}},
		{"bad WALSHIP_POLL", map[string]string{"WALSHIP_POLL": "often"}, []string{"wait", "--archive", arch, seg, dest}},
		{"bad WALSHIP_MAX_WAIT", map[string]string{"WALSHIP_MAX_WAIT": "x"}, []string{"wait", "--archive", arch, seg, dest}},
		{"bad WALSHIP_WATCH", map[string]string{"WALSHIP_WATCH": "maybe"}, []string{"wait", "--archive", arch, seg, dest}},
		{"bad WALSHIP_PREFETCH", map[string]string{"WALSHIP_PREFETCH": "many"}, []string{"fetch", "--archive", arch, seg, dest}},
		{"bad WALSHIP_LOG_LEVEL", map[string]string{"WALSHIP_LOG_LEVEL": "loud"}, []string{"wait", "--archive", arch, seg, dest}},
		{"unreadable config", map[string]string{"WALSHIP_CONFIG": unreadable}, []string{"wait", "--archive", arch, seg, dest}},
		{"--help with %f %p", nil, []string{"wait", "--help", "--archive", arch, seg, dest}},
		{"--version with %f %p", nil, []string{"--version", "wait", "--archive", arch, seg, dest}},
		{"help command with %f", nil, []string{"help", "wait", seg, dest}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, stderr := walshipRun(t, tc.args...)
			if code <= 125 {
				t.Errorf("walship %s: exit %d, want > 125; stderr %q", strings.Join(tc.args, " "), code, stderr)
			}
			if _, err := os.Stat(dest); err == nil {
				t.Errorf("%%p was written")
			}
		})
	}
}

// The same mistakes on archive_command or an operator's command line are
// ordinary usage errors: PostgreSQL's archiver retries, a person reads the
// message.
func TestOtherCommandLineErrors(t *testing.T) {
	unsetConfigEnv(t)
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--bogus", "push", "a", "b"}, exitUsage},
		{[]string{"--archive", "/x", "push", "a", "b"}, exitUsage},
		{[]string{"--bogus", "info"}, exitUsage},
		{[]string{"wait", "--help"}, exitOK}, // a person asking
		{[]string{"--help"}, exitOK},
	} {
		if code, stderr := walshipRun(t, tc.args...); code != tc.want {
			t.Errorf("walship %s: exit %d, want %d; stderr %q", strings.Join(tc.args, " "), code, tc.want, stderr)
		}
	}
}

func TestRoleOf(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want role
	}{
		{[]string{"walship", "wait", "a", "b"}, roleRestore},
		{[]string{"walship", "--archive", "push", "wait"}, roleRestore}, // an archive named push
		{[]string{"walship", "fetch"}, roleRestore},
		{[]string{"walship", "push", "pg_wal/x", "x"}, roleArchive},
		{[]string{"walship", "info"}, roleOperator},
		{[]string{"wait"}, roleOperator}, // argv[0] is the program
		{nil, roleOperator},
	} {
		if got := roleOf(tc.args); got != tc.want {
			t.Errorf("roleOf(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

// The help texts come from exitTable; check that what they say is what
// exitCodeFor does.
func TestExitHelpMatchesTable(t *testing.T) {
	help := exitHelp(roleRestore)
	for _, want := range []string{"   0  restored", "   1  not found", " 250  stop recovery"} {
		if !strings.Contains(help, want) {
			t.Errorf("restore help lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "   2  ") {
		t.Errorf("restore help lists exit 2, which PostgreSQL reads as not found:\n%s", help)
	}
	for _, o := range []outcome{outFailed, outUsage, outBadWAL} {
		if c := exitTable[roleRestore][o].code; c <= 125 {
			t.Errorf("restore outcome %d exits %d, want > 125", o, c)
		}
	}
	if got := exitCodeFor(roleRestore, usagef("x")); got != exitAbortRec {
		t.Errorf("usage error of a restore command: %d, want %d", got, exitAbortRec)
	}
	if got := exitCodeFor(roleArchive, usagef("x")); got != exitUsage {
		t.Errorf("usage error of push: %d, want %d", got, exitUsage)
	}
	if got := exitCodeFor(roleRestore, quietError{os.ErrNotExist}); got != exitFailed {
		t.Errorf("not found: %d, want %d", got, exitFailed)
	}
}
