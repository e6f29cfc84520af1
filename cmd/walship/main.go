// Command walship keeps a PostgreSQL standby fed from a WAL archive.
// See README.md, or run walship --help.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/walship/walship/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	r := roleOf(os.Args)
	if r == roleRestore {
		// A panic exits with code 2, which PostgreSQL reads as "not found"
		// and answers by promoting. Crash by SIGABRT instead: FATAL.
		debug.SetTraceback("crash")
	}
	// A broken stderr (the server's log pipe) must not kill a wait that
	// PostgreSQL depends on: writes fail with EPIPE instead, and are dropped.
	signal.Ignore(syscall.SIGPIPE)
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	ctx, cancel := context.WithCancel(context.Background())
	var got atomic.Value
	go func() {
		s := <-sigc
		if s == syscall.SIGQUIT {
			// PostgreSQL's immediate shutdown: go at once. Go's own
			// handler would dump every goroutine into the server log;
			// 128+3 reads, like death by the signal, as "stop recovery".
			os.Exit(exitSignal(syscall.SIGQUIT))
		}
		got.Store(s)
		cancel()
	}()
	standalone = true
	stopProfile := startProfile()
	code := runContext(ctx, os.Args, os.Stdout, os.Stderr)
	stopProfile()
	if s, ok := got.Load().(syscall.Signal); ok {
		dieBy(s)
	}
	os.Exit(code)
}

// dieBy ends walship by the signal s that stopped it, as PostgreSQL expects
// of a restore_command: killed by SIGTERM means "shutting down", while an
// exit code from 1 to 125 would read as "not found" and end recovery. A
// signal that was ignored when walship started (the startup process
// ignores SIGINT, and its children inherit that) stays ignored after
// signal.Reset, so dieBy then exits 128+s, which reads the same.
func dieBy(s syscall.Signal) {
	signal.Reset(s)
	syscall.Kill(os.Getpid(), s)
	time.Sleep(100 * time.Millisecond) // the signal is delivered at once if it can be
	os.Exit(exitSignal(s))
}

// standalone is set when walship runs as its own process, not inside tests.
var standalone bool

// oneShot tunes the runtime for a command that handles one WAL file and
// exits (push, wait, fetch): the garbage collector would trace buffers that
// exit is about to free anyway, which cost a zstd push 13 % of its time. The
// soft memory limit, far above what one segment needs (no collection at all
// in a push of 16 MiB), still collects in a wait that lasts hours or a long
// prefetch, so they stay small. Inside tests it does nothing.
func oneShot() {
	if standalone {
		debug.SetGCPercent(-1)
		debug.SetMemoryLimit(64 << 20)
	}
}

// startProfile writes a CPU profile to $WALSHIP_CPUPROFILE, for developers
// measuring where a command spends its time (see BENCHMARKS.md).
func startProfile() (stop func()) {
	path := os.Getenv("WALSHIP_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "walship: WALSHIP_CPUPROFILE: %v\n", err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// run runs walship with args and returns its exit code; tests call it.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runApp(ctx, buildApp(stdout, stderr, args, nil), args, stderr)
}

// runApp runs app, reports its error on stderr and returns the exit code,
// which exitTable decides from who runs walship (roleOf) and how it ended.
func runApp(ctx context.Context, app *cli.App, args []string, stderr io.Writer) (code int) {
	r := roleOf(args)
	g, _ := app.Metadata[globalsKey].(*globals)
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(stderr, "walship: internal error: %v\n%s", p, debug.Stack())
			code = exitCodeFor(r, fmt.Errorf("panic: %v", p))
		}
	}()
	err := app.RunContext(ctx, args)
	if err == nil && r == roleRestore && helpShownForRestore(args, g != nil && g.ran) {
		err = usagef("nothing was restored: --help or --version on a restore_command line; remove it from restore_command")
	}
	code = exitCodeFor(r, err)
	var q quietError
	switch {
	case err == nil, errors.As(err, &q):
	case interrupted(err):
		fmt.Fprintln(stderr, "walship: interrupted")
	default:
		fmt.Fprintf(stderr, "walship: %v\n", err)
	}
	return code
}

// usageError marks an error in how walship was called.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// quietError is an answer, not a failure: "not found" from a restore
// command, which PostgreSQL expects many times. It is logged at debug level
// where it happens, and main prints nothing for it.
type quietError struct{ err error }

func (q quietError) Error() string { return q.err.Error() }
func (q quietError) Unwrap() error { return q.err }

// abortError marks an error that must stop PostgreSQL's recovery: the
// archive holds a corrupt or foreign file, and going on would either apply
// it or end recovery early.
type abortError struct{ err error }

func (a abortError) Error() string { return a.err.Error() }
func (a abortError) Unwrap() error { return a.err }

// globalsKey finds an app's globals in its Metadata.
const globalsKey = "walship.globals"

// globals are what every command gets from the top-level flags.
type globals struct {
	stdout, stderr io.Writer
	logger         *slog.Logger
	// ran is set by the actions of restore commands: an exit 0 without it
	// restored nothing.
	ran bool
}

// walshipCommand is one of walship's commands: its name and usage line,
// which walship --help lists, and how to build the rest of it.
type walshipCommand struct {
	name, usage string
	build       func(*globals) *cli.Command
}

// walshipCommands lists the commands in the order of walship --help. A
// call builds only the command it runs (its flags and help texts cost more
// than the rest of a call): the others are their name and usage line.
func walshipCommands() []walshipCommand {
	return []walshipCommand{
		{"push", "archive one WAL file (the primary's archive_command)", pushCommand},
		{"wait", "wait for a WAL file and restore it (a pg_standby-mode standby's restore_command)", waitCommand},
		{"promote", "end a standby's recovery: write the trigger file, or call pg_promote()", promoteCommand},
		{"tail", "ship the current WAL segment record by record (a daemon on the primary)", tailCommand},
		{"backup", "take a base backup into the archive", backupCommand},
		{"restore", "rebuild a data directory from a backup, for point-in-time recovery or a standby", restoreCommand},
		{"fetch", "restore a WAL file now, or say it is not archived (restore_command for point-in-time recovery and standby.signal standbys)", fetchCommand},
		{"info", "list the archive's backups and its WAL per timeline, with gaps", infoCommand},
		{"verify", "read every archived file and check it, and the WAL chain of every backup", verifyCommand},
		{"expire", "remove old backups and the WAL only they need", expireCommand},
		{"cleanup", "remove archived segments a standby no longer needs (archive_cleanup_command)", cleanupCommand},
		{"exporter", "serve Prometheus metrics of archive health for every cluster of a repository (a daemon)", exporterCommand},
		{"check", "prove that the primary archives into the archive, end to end", checkCommand},
		{"encryption", "encrypt the archive at rest (age public keys): keygen, init, add-key, retire-key, status, rewrap", encryptionCommand},
	}
}

// newApp builds walship with every command in full. Tests pass extra
// commands, which get the same treatment as walship's own.
func newApp(stdout, stderr io.Writer, extra ...*cli.Command) *cli.App {
	return buildApp(stdout, stderr, nil, extra)
}

// buildApp builds walship to run args: the command args name is built in
// full, the others only as far as walship --help lists them. With args nil,
// or naming help, every command is built.
func buildApp(stdout, stderr io.Writer, args []string, extra []*cli.Command) *cli.App {
	g := &globals{stdout: stdout, stderr: stderr, logger: slog.New(slog.DiscardHandler)}
	app := &cli.App{
		Name:    "walship",
		Usage:   "keep a PostgreSQL standby fed from a WAL archive",
		Version: version,
		Description: `walship ships WAL from a primary into an archive (a directory, also on NFS)
and feeds a standby from it, the way pg_standby did.

On the primary, in postgresql.conf:
   archive_mode = on
   archive_command = 'walship push --archive /srv/walship/main %p %f'

`,
		Writer:    stdout,
		ErrWriter: stderr,
		Action:    topAction,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"WALSHIP_LOG_LEVEL"},
				Usage: "debug, info, warn or error; logs go to stderr, which PostgreSQL puts in its log"},
			&cli.StringFlag{Name: "log-format", Value: "text", EnvVars: []string{"WALSHIP_LOG_FORMAT"},
				Usage: "text or json"},
			configFlag(),
		},
		Before: func(c *cli.Context) error {
			l, err := newLogger(stderr, c.String("log-level"), c.String("log-format"))
			if err != nil {
				return err
			}
			g.logger = l
			return nil
		},
		Metadata:       map[string]any{globalsKey: g},
		ExitErrHandler: func(*cli.Context, error) {}, // main decides exit codes
		OnUsageError:   onUsageError,
	}
	name, only := commandIn(app, args)
	if !only || name == "" {
		// Not when a command runs: its own help has its exit codes.
		app.Description += exitHelpAll()
	}
	all := func() []*cli.Command {
		var cmds []*cli.Command
		for _, wc := range walshipCommands() {
			c := wc.build(g)
			c.Usage = wc.usage
			cmds = append(cmds, c)
		}
		return append(cmds, extra...)
	}
	if !only {
		app.Commands = all()
	} else {
		for _, wc := range walshipCommands() {
			if wc.name == name {
				c := wc.build(g)
				c.Usage = wc.usage
				app.Commands = append(app.Commands, c)
			} else {
				app.Commands = append(app.Commands, &cli.Command{Name: wc.name, Usage: wc.usage})
			}
		}
		app.Commands = append(app.Commands, extra...)
	}
	// urfave/cli calls a command's own OnUsageError for a bad flag; commands
	// that set none get exit code 2.
	for _, c := range app.Commands {
		if c.OnUsageError == nil {
			c.OnUsageError = onUsageError
		}
	}
	// A config file may name the flags of any command, so reading one
	// needs them all.
	readConfigFile(app, g, func() []*cli.Command {
		if only {
			return all()
		}
		return app.Commands
	})
	return app
}

// commandIn returns the name of the command args run: the first argument
// that is no top-level flag or flag value. only says whether building just
// that command (or none, when it names none of walship's) is enough; it is
// false for help, which may show any command, and after "--".
func commandIn(app *cli.App, args []string) (name string, only bool) {
	if args == nil {
		return "", false
	}
	takesValue := map[string]bool{}
	for _, f := range app.Flags {
		if _, ok := f.(*cli.BoolFlag); !ok {
			for _, n := range flagNames(f) {
				takesValue[n] = true
			}
		}
	}
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return "", false
		case strings.HasPrefix(a, "-"):
			if n := strings.TrimLeft(a, "-"); takesValue[n] {
				i++ // its value
			}
		case a == "help" || a == "h":
			return a, false
		default:
			return a, true
		}
	}
	return "", true
}

func onUsageError(_ *cli.Context, err error, _ bool) error { return usageError{err} }

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: use text or json", format)
}
