package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/walship/walship/internal/cli"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/trigger"
	"github.com/walship/walship/waiter"
)

// waitOptions are the settings of walship wait.
type waitOptions struct {
	Archive string
	SSH     sshOptions
	Trigger string
	MaxWait time.Duration
	Poll    time.Duration
	NoWatch bool
	Cleanup bool
	PGData  string // where pg_control is; PostgreSQL runs restore_command in the data directory
	Name    string // %f
	Dest    string // %p
	Restart string // %r, optional
}

func waitCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:      "wait",
		ArgsUsage: "%f %p [%r]",
		Description: `wait is the restore_command of a warm standby in pg_standby mode: it waits
until the segment PostgreSQL asks for is in the archive, verifies it (zstd
checksum, size, page header, system identifier; for a raw segment its
checksum file and every WAL record, since a damaged record is the end of WAL
to the server) and writes it to %p. When a trigger file appears, it ends
recovery and PostgreSQL promotes the standby.

In the standby's postgresql.conf (PostgreSQL 12 or later), with an empty
recovery.signal file in the data directory (not standby.signal):
   restore_command = 'walship wait --archive /srv/walship/main --trigger /var/lib/postgresql/walship.trigger %f %p %r'
   recovery_end_command = 'rm -f /var/lib/postgresql/walship.trigger'
   hot_standby = on
   recovery_prefetch = off      # PostgreSQL 15 and later, see below

recovery_end_command removes the trigger once the standby is promoted: a
stale trigger file would promote the next standby started with it at once.

recovery_prefetch = off matters on PostgreSQL 15 and later: with it on (the
default is try), the server reads WAL ahead of replay and asks for the next
segment before it has applied the end of the current one, so the standby's
visible state (and its first consistent state after a base backup) lags
until the next segment is archived. A failover still applies everything.
wait reads the server's settings (its command line in postmaster.opts,
postgresql.conf with its includes, postgresql.auto.conf) and, when read-ahead
is on, logs a warning naming the fix once per server start. No answer of a
waiting restore_command avoids the lag: to keep read-ahead, use a
standby.signal standby with walship fetch instead.

Failover: walship promote --trigger FILE (or write "smart" or "fast" into it).
   smart (or an empty file): restore every segment already archived, then end
          recovery; nothing archived is lost. An empty file counts once it
          has stayed empty for a second (echo fast > FILE is empty at first).
   fast: end recovery now; the file is then rewritten to "smart" so a segment
          PostgreSQL asks for again is still served.
   SIGUSR1 to walship wait, or --max-wait running out, is a fast failover.
   Anything else in the file is ignored, with a warning.

.history, .backup and other names are answered at once (PostgreSQL probes
history files when it picks a new timeline). An archive that cannot be read
(unreachable, a directory that does not exist or is empty) is retried with
backoff and logged, never reported as "not found", which would promote the
standby. A corrupt or foreign segment stops recovery, and so does a raw one
that is short while later WAL is archived or a smart trigger is set.

` + exitHelp(roleRestore),
		Flags: append([]cli.Flag{
			archiveFlag(),
			&cli.StringFlag{Name: "trigger", EnvVars: []string{"WALSHIP_TRIGGER"},
				Usage: "trigger `FILE` that ends recovery: empty or \"smart\", or \"fast\""},
			&cli.DurationFlag{Name: "max-wait", EnvVars: []string{"WALSHIP_MAX_WAIT"},
				Usage: "end recovery (as fast) when one segment takes longer than this; 0 waits forever"},
			&cli.DurationFlag{Name: "poll", Value: waiter.DefaultPoll, EnvVars: []string{"WALSHIP_POLL"},
				Usage: "how often to look into the archive when it cannot be watched (NFS, SFTP); also the safety net when it can"},
			&cli.BoolFlag{Name: "watch", Value: true, EnvVars: []string{"WALSHIP_WATCH"},
				Usage: "watch a local archive for new files (inotify); --watch=false polls every --poll instead, for a file system whose notifications cannot be trusted (walship already polls on NFS and SFTP)"},
			&cli.BoolFlag{Name: "cleanup", EnvVars: []string{"WALSHIP_CLEANUP"},
				Usage: "remove archived segments older than %r, as walship cleanup does (never .history, nor the WAL of a backup); only for an archive that feeds this one standby"},
			&cli.StringFlag{Name: "pgdata", EnvVars: []string{"PGDATA"},
				Usage: "the standby's data directory, to read its system identifier (default: the current directory, where PostgreSQL runs restore_command)"},
		}, sshFlags()...),
		Action: func(c *cli.Context) error {
			g.ran = true
			if c.NArg() < 2 || c.NArg() > 3 {
				return usagef("wait takes %%f %%p [%%r]; got %d arguments", c.NArg())
			}
			err := runWait(c.Context, g.logger, waitOptions{
				Archive: c.String("archive"),
				SSH:     sshOptionsFrom(c, g.logger),
				Trigger: c.String("trigger"),
				MaxWait: c.Duration("max-wait"),
				Poll:    c.Duration("poll"),
				NoWatch: !c.Bool("watch"),
				Cleanup: c.Bool("cleanup"),
				PGData:  c.String("pgdata"),
				Name:    c.Args().Get(0),
				Dest:    c.Args().Get(1),
				Restart: c.Args().Get(2),
			})
			if errors.Is(err, waiter.ErrNotFound) {
				g.logger.Debug("answering not found", "file", c.Args().Get(0), "reason", err)
				return quietError{err}
			}
			// Anything else stops recovery rather than ending it (exitTable).
			return err
		},
	}
}

func runWait(ctx context.Context, logger *slog.Logger, opts waitOptions) error {
	oneShot()
	if opts.Cleanup && opts.Restart == "" {
		return usagef("--cleanup needs %%r as the third argument")
	}
	st, err := openArchiveToRead(ctx, opts.Archive, opts.SSH)
	if err != nil {
		return err
	}
	defer st.Close()
	exp, err := expectation(ctx, st, opts.PGData, logger)
	if err != nil {
		return err
	}
	waiter.CheckRecoveryPrefetch(opts.PGData, logger)
	w := &waiter.Waiter{
		Storage: st,
		Expect:  exp,
		Logger:  logger,
		Poll:    opts.Poll,
		NoWatch: opts.NoWatch,
		MaxWait: opts.MaxWait,
		Alive:   postmasterAlive(opts.PGData),
	}
	if opts.Trigger != "" {
		tctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ft, err := newFileTrigger(tctx, opts.Trigger, opts.PGData, opts.Poll, logger)
		if err != nil {
			return err
		}
		w.Trigger = ft
	} else {
		st := newSignalTrigger()
		defer st.stop()
		w.Trigger = st
	}
	if err := w.Wait(ctx, opts.Name, opts.Dest); err != nil {
		return err
	}
	if opts.Cleanup {
		if _, _, err := cleanup(ctx, st, opts.Restart, false, logger); err != nil {
			logger.Warn("cleanup failed; the segment was restored", "err", err)
		}
	}
	return nil
}

// expectation works out which cluster restored segments must belong to:
// the standby's own (from pg_control) and the archive's (walship.json), which
// must agree.
func expectation(ctx context.Context, st archive.Storage, pgdata string, logger *slog.Logger) (waiter.Expect, error) {
	var exp waiter.Expect
	if pgdata == "" {
		pgdata = "."
	}
	sysid, err := waiter.ControlSystemID(pgdata)
	switch {
	case err == nil:
		exp.SystemID = sysid
	case errors.Is(err, os.ErrNotExist):
		// Not run from a data directory: the archive's identity decides.
	default:
		return exp, fmt.Errorf("read the standby's system identifier: %w", err)
	}
	id, err := archive.ReadIdentityOrFlat(ctx, st) // a pg_standby archive: its first segment's
	switch {
	case err == nil:
		if exp.SystemID != 0 && exp.SystemID != id.SystemID {
			abs, _ := filepath.Abs(pgdata)
			return exp, fmt.Errorf("%w: this standby (%s) has database system identifier %d, the archive %s holds WAL of %d: point --archive at its primary's archive",
				waiter.ErrBadWAL, abs, exp.SystemID, st, id.SystemID)
		}
		exp.SystemID = id.SystemID
		exp.SegmentSize = id.SegmentSize
	case errors.Is(err, archive.ErrNoIdentity):
		// An archive filled by plain cp: page headers and pg_control decide.
	default:
		// Unreadable now; the wait retries reading the archive itself.
		logger.Warn("cannot read the archive identity", "err", err)
	}
	return exp, nil
}

// postmasterAlive returns a check that the postmaster of the data directory
// pgdata still runs, or nil when pgdata has no postmaster.pid. A postmaster
// killed with SIGKILL leaves its startup process blocked in restore_command;
// a wait that noticed nothing would keep that process, and the data
// directory's shared memory, alive.
func postmasterAlive(pgdata string) func() error {
	if pgdata == "" {
		pgdata = "."
	}
	b, err := os.ReadFile(filepath.Join(pgdata, "postmaster.pid"))
	if err != nil {
		return nil
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 1 {
		return nil
	}
	return func() error {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("the postmaster (pid %d) is gone: stopping", pid)
		}
		return nil
	}
}

// fileTrigger is the trigger file and SIGUSR1, as waiter.Trigger.
type fileTrigger struct {
	path    string
	watcher *trigger.Watcher
	reader  *trigger.Reader
	wake    chan struct{} // the watcher's news, and rechecks of an empty file
	logger  *slog.Logger
	warned  bool
	pgdata  string // whose postmaster.pid tells when the server started
	// staleChecked is set once the trigger's age was checked.
	staleChecked bool
}

func newFileTrigger(ctx context.Context, path, pgdata string, poll time.Duration, logger *slog.Logger) (*fileTrigger, error) {
	w := &trigger.Watcher{Path: path, PollInterval: poll, Logger: logger}
	ch, err := w.Start(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch trigger file: %w", err)
	}
	f := &fileTrigger{path: path, watcher: w, reader: &trigger.Reader{Path: path},
		wake: make(chan struct{}, 1), logger: logger, pgdata: pgdata}
	go func() {
		for range ch {
			f.notify()
		}
	}()
	return f, nil
}

func (f *fileTrigger) notify() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *fileTrigger) Mode() trigger.Mode {
	if f.watcher.SignalledFast() {
		return trigger.Fast
	}
	m, recheck, err := f.reader.Mode()
	if err != nil {
		if !f.warned {
			f.logger.Warn("ignoring trigger file: write \"smart\" or \"fast\" into it, or leave it empty", "path", f.path, "err", err)
			f.warned = true
		}
		return trigger.None
	}
	if recheck > 0 {
		// An empty file that may be written in a moment: look again
		// once it has settled.
		f.logger.Debug("trigger file is empty; waiting for it to settle", "path", f.path, "recheck_in", recheck)
		time.AfterFunc(recheck, f.notify)
	}
	if m != trigger.None && !f.staleChecked {
		f.staleChecked = true
		f.warnStale()
	}
	return m
}

// warnStale warns when the trigger file is older than the server that runs
// this wait: it was left from an earlier failover (recovery_end_command did
// not remove it) and promotes this standby at once, the classic way to
// promote the wrong standby. It still acts, as documented.
func (f *fileTrigger) warnStale() {
	fi, err := os.Stat(f.path)
	start, ok := postmasterStart(f.pgdata)
	if err != nil || !ok || !fi.ModTime().Before(start) {
		return
	}
	f.logger.Warn("the trigger file is older than this server's start: it was left from before, and ends recovery now; "+
		"if this standby was not meant to be promoted, stop it and remove the file, and have recovery_end_command remove it",
		"path", f.path, "age", time.Since(fi.ModTime()).Round(time.Second), "server_started", start.UTC().Format(time.RFC3339))
}

// postmasterStart returns when the postmaster of the data directory pgdata
// started: the third line of postmaster.pid, in seconds since the epoch.
func postmasterStart(pgdata string) (time.Time, bool) {
	if pgdata == "" {
		pgdata = "."
	}
	b, err := os.ReadFile(filepath.Join(pgdata, "postmaster.pid"))
	if err != nil {
		return time.Time{}, false
	}
	lines := strings.SplitN(string(b), "\n", 4)
	if len(lines) < 3 {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(lines[2]), 10, 64)
	if err != nil || sec <= 0 {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

func (f *fileTrigger) Consume() error { return trigger.Consume(f.path) }

func (f *fileTrigger) Changed() <-chan struct{} { return f.wake }

// signalTrigger is SIGUSR1 alone, pg_standby's fast failover, for a wait
// without a trigger file.
type signalTrigger struct {
	sigs    chan os.Signal
	changed chan struct{}
	fast    atomic.Bool
	done    chan struct{}
}

func newSignalTrigger() *signalTrigger {
	t := &signalTrigger{sigs: make(chan os.Signal, 1), changed: make(chan struct{}, 1), done: make(chan struct{})}
	signal.Notify(t.sigs, syscall.SIGUSR1)
	go func() {
		for {
			select {
			case <-t.sigs:
				t.fast.Store(true)
				select {
				case t.changed <- struct{}{}:
				default:
				}
			case <-t.done:
				return
			}
		}
	}()
	return t
}

func (t *signalTrigger) stop() { signal.Stop(t.sigs); close(t.done) }

func (t *signalTrigger) Mode() trigger.Mode {
	if t.fast.Load() {
		return trigger.Fast
	}
	return trigger.None
}

// Consume forgets the signal once a fast failover was answered, so a
// segment asked for again is served.
func (t *signalTrigger) Consume() error { t.fast.Store(false); return nil }

func (t *signalTrigger) Changed() <-chan struct{} { return t.changed }
