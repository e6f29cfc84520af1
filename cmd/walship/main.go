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

	"github.com/urfave/cli/v2"
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
	ctx, cancel := context.WithCancel(context.Background())
	var got atomic.Value
	go func() {
		// Notify here, not before the command starts: the first Notify
		// waits for the runtime to start a signal thread, 0.13 ms of a call
		// that takes 2. Until it is done, the signals do what they do
		// between exec and main anyway (SIGTERM, SIGINT and SIGHUP kill
		// walship by that signal, as dieBy would).
		signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
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
	return runApp(ctx, newApp(stdout, stderr), args, stderr)
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

// newApp builds walship. Tests pass extra commands, which get the same
// treatment as walship's own.
func newApp(stdout, stderr io.Writer, extra ...*cli.Command) *cli.App {
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

` + exitHelpAll(),
		Writer:    stdout,
		ErrWriter: stderr,
		Action:    topAction,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"WALSHIP_LOG_LEVEL"},
				Usage: "debug, info, warn or error; logs go to stderr, which PostgreSQL puts in its log"},
			&cli.StringFlag{Name: "log-format", Value: "text", EnvVars: []string{"WALSHIP_LOG_FORMAT"},
				Usage: "text or json"},
		},
		Before: func(c *cli.Context) error {
			l, err := newLogger(stderr, c.String("log-level"), c.String("log-format"))
			if err != nil {
				return err
			}
			g.logger = l
			return nil
		},
		Commands: append([]*cli.Command{
			pushCommand(g),
			waitCommand(g),
			promoteCommand(g),
			tailCommand(g),
			backupCommand(g),
			restoreCommand(g),
			fetchCommand(g),
			infoCommand(g),
			verifyCommand(g),
			expireCommand(g),
			cleanupCommand(g),
			exporterCommand(g),
			checkCommand(g),
			encryptionCommand(g),
		}, extra...),
		Metadata:       map[string]any{globalsKey: g},
		ExitErrHandler: func(*cli.Context, error) {}, // main decides exit codes
		OnUsageError:   onUsageError,
	}
	// urfave/cli calls a command's own OnUsageError for a bad flag; commands
	// that set none get exit code 2.
	for _, c := range app.Commands {
		if c.OnUsageError == nil {
			c.OnUsageError = onUsageError
		}
	}
	readConfigFile(app, g)
	return app
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
