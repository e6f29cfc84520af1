package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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

// An unknown command is a usage error that suggests the closest one; on a
// line PostgreSQL could have run (it names a WAL file) it stops recovery.
func TestUnknownCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
		say  string
	}{
		{[]string{"nosuch"}, exitUsage, `unknown command "nosuch"`},
		{[]string{"expier", "--keep", "2"}, exitUsage, `did you mean "expire"`},
		{[]string{"wiat", "000000010000000000000001", "pg_wal/RECOVERYXLOG"}, exitAbortRec, `did you mean "wait"`},
		{[]string{"psuh", "pg_wal/000000010000000000000001", "000000010000000000000001"}, exitAbortRec, `did you mean "push"`},
	} {
		code, stderr := walshipRun(t, tc.args...)
		if code != tc.want || !strings.Contains(stderr, tc.say) {
			t.Errorf("walship %s: exit %d, stderr %q; want %d and %q", strings.Join(tc.args, " "), code, stderr, tc.want, tc.say)
		}
	}
	var out, errb strings.Builder
	if code := run([]string{"walship", "help", "push"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "walship push") {
		t.Errorf("walship help push: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

// commandNames, which roleOf reads, lists every command of the app.
func TestCommandNames(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	app.Setup()
	var names []string
	for _, c := range app.Commands {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	want := slices.Clone(commandNames)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("commands %v, commandNames %v", names, want)
	}
}

// The README's exit-code table says "never" exactly where exitTable has no
// outcome with that code for that role.
func TestREADMEExitCodes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Exit codes\n")
	if !ok {
		t.Fatal("README has no Exit codes section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	roles := []role{roleArchive, roleRestore, roleOperator} // the table's columns
	rows := 0
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		code, err := strconv.Atoi(cells[0])
		if err != nil || len(cells) != 1+len(roles) {
			continue
		}
		rows++
		for i, r := range roles {
			used := false
			for _, e := range exitTable[r] {
				used = used || e.code == code
			}
			if never := cells[1+i] == "never"; never == used {
				t.Errorf("README: exit %d for role %d says %q; exitTable uses it: %v", code, r, cells[1+i], used)
			}
		}
	}
	codes := map[int]bool{}
	for _, m := range exitTable {
		for _, e := range m {
			codes[e.code] = true
		}
	}
	if rows != len(codes) {
		t.Errorf("README's table has %d code rows, exitTable uses %d codes", rows, len(codes))
	}
}

// expire without --keep is a usage error that says what to pass.
func TestExpireNeedsKeep(t *testing.T) {
	code, stderr := walshipRun(t, "expire", "--archive", t.TempDir())
	if code != exitUsage || !strings.Contains(stderr, "--keep N is required") {
		t.Errorf("bare expire: exit %d, stderr %q; want %d and that --keep is required", code, stderr, exitUsage)
	}
}
