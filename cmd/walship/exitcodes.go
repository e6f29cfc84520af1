package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// Exit codes. What each one means depends on who reads it: see exitTable.
const (
	exitOK       = 0
	exitFailed   = 1   // failed, or not found
	exitUsage    = 2   // bad arguments or configuration
	exitAbortRec = 250 // restore_command only: stop recovery rather than end it
)

// A role is who runs a command, and so who reads its exit code.
type role int

const (
	// roleOperator: a person, a script or cron (promote, backup, info…).
	roleOperator role = iota
	// roleArchive: PostgreSQL's archive_command (push). Any code from 1 to
	// 125 makes the archiver retry the file later; a code above 125, or a
	// signal, kills the archiver, which the postmaster restarts.
	roleArchive
	// roleRestore: PostgreSQL's restore_command (wait, fetch). A code from 1
	// to 125 means "not found": in archive recovery (recovery.signal) that is
	// the end of WAL, and the server promotes. A code above 125, or death by
	// a signal other than SIGTERM, is FATAL: the server stops instead. So
	// every failure that is not a true "not found" must be above 125.
	roleRestore
)

// restoreCommands and archiveCommands name the commands of each role that
// PostgreSQL runs.
var (
	restoreCommands = []string{"wait", "fetch"}
	archiveCommands = []string{"push"}
)

// An outcome is what a command came to.
type outcome int

const (
	outDone     outcome = iota
	outNotFound         // a restore command: the file is not archived
	outFailed           // it could not be done: unreachable, conflict, refused
	outUsage            // wrong arguments, flags, environment or config file
	outBadWAL           // the archive holds WAL that must not be applied
)

// exitTable is the one place that decides walship's exit codes: role ×
// outcome → code, with PostgreSQL's reading of it. main, every error path
// before and after flag parsing, signal handling (exitSignal) and the help
// texts (exitHelp) use it.
var exitTable = map[role]map[outcome]exitEntry{
	roleOperator: {
		outDone:     {exitOK, "done"},
		outFailed:   {exitFailed, "failed"},
		outNotFound: {exitFailed, "not found"},
		outBadWAL:   {exitFailed, "the archive holds bad WAL"},
		outUsage:    {exitUsage, "usage error"},
	},
	roleArchive: {
		outDone:   {exitOK, "the file is durable in the archive"},
		outFailed: {exitFailed, "the archive cannot be written, or holds a different file of that name"},
		outBadWAL: {exitFailed, "the file is not WAL of this cluster"},
		outUsage:  {exitUsage, "usage error"},
	},
	roleRestore: {
		outDone:     {exitOK, "%p holds the verified file"},
		outNotFound: {exitFailed, "the archive, which is there, does not hold the file"},
		outFailed:   {exitAbortRec, "an archive that stays unreadable, or any failure that is not \"not found\""},
		outBadWAL:   {exitAbortRec, "corrupt, truncated or foreign WAL"},
		outUsage:    {exitAbortRec, "walship was called or configured wrongly (flags, environment, config file)"},
	},
}

// exitReading is what the caller makes of each code, by role.
var exitReading = map[role]map[int]string{
	roleArchive: {
		exitOK:     "archived",
		exitFailed: "PostgreSQL keeps the file and retries later",
		exitUsage:  "PostgreSQL retries later; fix archive_command",
	},
	roleRestore: {
		exitOK:       "restored",
		exitFailed:   "not found: with recovery.signal the server ends recovery and promotes, with standby.signal it asks again later",
		exitAbortRec: "stop recovery: the server stops with FATAL instead of promoting",
	},
}

type exitEntry struct {
	code    int
	meaning string
}

// roleOf tells from the command line who runs walship. It looks at every
// argument, not only at where the command should be: "walship --archive DIR
// wait %f %p" names wait after a misplaced flag, and must still stop
// recovery rather than promote. A restore command anywhere wins, because a
// wrong "stop recovery" is an outage while a wrong "not found" is a
// promotion.
func roleOf(args []string) role {
	if len(args) > 0 {
		args = args[1:]
	}
	for _, a := range args {
		if slices.Contains(restoreCommands, a) {
			return roleRestore
		}
	}
	for _, a := range args {
		if slices.Contains(archiveCommands, a) {
			return roleArchive
		}
	}
	// No command PostgreSQL runs, but a WAL file name: a mistyped command
	// in restore_command or archive_command ("walship wiat %f %p"). Exit 2
	// would be "not found" to a restore command; stopping recovery is the
	// safe reading, and to the archiver it is a retry after a restart.
	if !namesCommand(args) && slices.ContainsFunc(args, func(a string) bool { _, err := wal.ParseName(a); return err == nil }) {
		return roleRestore
	}
	return roleOperator
}

// namesCommand reports whether args name one of walship's commands.
func namesCommand(args []string) bool {
	for _, a := range args {
		if slices.Contains(commandNames, a) {
			return true
		}
	}
	return false
}

// commandNames are walship's commands, for roleOf; TestCommandNames keeps
// it in step with newApp.
var commandNames = []string{"push", "wait", "promote", "tail", "backup", "restore", "fetch", "info", "verify", "expire", "cleanup", "exporter", "check", "encryption", "help"}

// outcomeOf classifies the error a command returned.
func outcomeOf(err error) outcome {
	var u usageError
	var a abortError
	var q quietError
	switch {
	case err == nil:
		return outDone
	case errors.As(err, &a):
		return outBadWAL
	case errors.As(err, &q):
		return outNotFound
	case errors.As(err, &u), errors.Is(err, wal.ErrInvalidName), errors.Is(err, archive.ErrInvalidName):
		return outUsage
	default:
		return outFailed
	}
}

// exitCodeFor returns the exit code of err for a command of role r.
func exitCodeFor(r role, err error) int {
	if e, ok := exitTable[r][outcomeOf(err)]; ok {
		return e.code
	}
	return exitFailed // an outcome the role does not have: a failure
}

// exitCode is exitCodeFor for an operator's command; tests of commands that
// PostgreSQL does not run use it.
func exitCode(err error) int { return exitCodeFor(roleOperator, err) }

// exitSignal returns the exit code of a walship stopped by sig, whatever its role,
// used only when dying by the signal itself was not possible (it was
// ignored when walship started). 128+n is what a shell reports for death by
// signal n, and PostgreSQL reads it as such: above 125, never "not found".
func exitSignal(sig syscall.Signal) int { return 128 + int(sig) }

// exitHelp is the "Exit codes" paragraph of a command of role r, generated
// from exitTable so that help and behaviour cannot disagree.
func exitHelp(r role) string {
	var b strings.Builder
	switch r {
	case roleRestore:
		b.WriteString("Exit codes (PostgreSQL runs this as restore_command):\n")
	case roleArchive:
		b.WriteString("Exit codes (PostgreSQL runs this as archive_command):\n")
	default:
		b.WriteString("Exit codes:\n")
	}
	b.WriteString(exitLines(r))
	return strings.TrimRight(b.String(), "\n")
}

// exitLines lists the codes of role r, one a line, then how signals end it.
func exitLines(r role) string {
	byCode := map[int][]string{}
	var codes []int
	for _, o := range []outcome{outDone, outFailed, outNotFound, outBadWAL, outUsage} {
		e, ok := exitTable[r][o]
		if !ok {
			continue
		}
		if _, ok := byCode[e.code]; !ok {
			codes = append(codes, e.code)
		}
		byCode[e.code] = append(byCode[e.code], e.meaning)
	}
	slices.Sort(codes)
	var b strings.Builder
	for _, c := range codes {
		line := strings.Join(byCode[c], "; ")
		if reading, ok := exitReading[r][c]; ok {
			line = reading + " (" + line + ")"
		}
		fmt.Fprintf(&b, "   %3d  %s\n", c, line)
	}
	switch r {
	case roleRestore:
		b.WriteString("   Stopped by SIGTERM, SIGINT or SIGHUP, walship dies by that signal (SIGTERM:\n" +
			"   the server is shutting down; the others stop recovery), or exits 128+N when\n" +
			"   the signal cannot kill it. It never exits 1 for a signal or an error.\n")
	default:
		b.WriteString("   Stopped by SIGTERM, SIGINT or SIGHUP, walship dies by that signal.\n")
	}
	return b.String()
}

// exitHelpAll is the top-level help's account of exit codes, per role.
func exitHelpAll() string {
	return "Exit codes of push (PostgreSQL's archive_command):\n" + exitLines(roleArchive) +
		"Exit codes of wait and fetch (PostgreSQL's restore_command):\n" + exitLines(roleRestore) +
		"Exit codes of every other command:\n" + strings.TrimRight(exitLines(roleOperator), "\n")
}

// helpShownForRestore reports whether a restore command line that PostgreSQL
// could have run (it names a WAL file, as %f does) ended without restoring
// anything and without an error: --help or --version given by mistake. Exit
// 0 would tell the server that %p holds the file; it finds none and reads
// that as "not found", which promotes.
func helpShownForRestore(args []string, ran bool) bool {
	if ran {
		return false
	}
	for _, a := range args[min(1, len(args)):] {
		if _, err := wal.ParseName(a); err == nil {
			return true
		}
	}
	return false
}

// interrupted reports whether err is a command giving up because walship is
// being stopped.
func interrupted(err error) bool { return errors.Is(err, context.Canceled) }
