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

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// Exit codes. PostgreSQL reads every code from 1 to 125 as "failed, try
// again" (archive_command) or "not found" (restore_command), and a code
// above 125 as "stop recovery now".
const (
	exitOK       = 0
	exitFailed   = 1   // not found, or failed: PostgreSQL retries
	exitUsage    = 2   // bad arguments or configuration
	exitAbortRec = 250 // restore_command only: the archive holds bad WAL, stop recovery
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	ctx, cancel := context.WithCancel(context.Background())
	var got atomic.Value
	go func() {
		s := <-sigc
		if s == syscall.SIGQUIT {
			// PostgreSQL's immediate shutdown: go at once. Go's own
			// handler would dump every goroutine into the server log;
			// 128+3 reads, like death by the signal, as "stop recovery".
			os.Exit(128 + int(syscall.SIGQUIT))
		}
		got.Store(s)
		cancel()
	}()
	standalone = true
	stopProfile := startProfile()
	code := runContext(ctx, os.Args, os.Stdout, os.Stderr)
	stopProfile()
	if s, ok := got.Load().(syscall.Signal); ok {
		// Die by the signal that stopped us, as PostgreSQL expects of a
		// restore_command: killed by SIGTERM means "shutting down", while an
		// exit code would read as "not found" and could end recovery.
		signal.Reset(s)
		syscall.Kill(os.Getpid(), s)
		time.Sleep(time.Second)
	}
	os.Exit(code)
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

// runApp runs app, reports its error on stderr and returns the exit code.
func runApp(ctx context.Context, app *cli.App, args []string, stderr io.Writer) int {
	err := app.RunContext(ctx, args)
	code := exitCode(err)
	var q quietError
	switch {
	case err == nil, errors.As(err, &q):
	case errors.Is(err, context.Canceled):
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

// exitCode maps an error to walship's exit code: the only place that does.
func exitCode(err error) int {
	var u usageError
	var a abortError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &a):
		return exitAbortRec
	case errors.As(err, &u), errors.Is(err, wal.ErrInvalidName), errors.Is(err, archive.ErrInvalidName):
		return exitUsage
	default:
		return exitFailed
	}
}

// globals are what every command gets from the top-level flags.
type globals struct {
	stdout, stderr io.Writer
	logger         *slog.Logger
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

Exit codes: 0 done; 1 failed or not found (PostgreSQL retries); 2 usage error;
250 stop recovery (restore commands only: the archive holds corrupt or foreign WAL).`,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
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
		}, extra...),
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
