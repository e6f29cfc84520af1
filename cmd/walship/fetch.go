package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/walship/walship/internal/cli"
	"golang.org/x/sys/unix"

	"github.com/walship/walship/waiter"
	"github.com/walship/walship/wal"
)

// fetchOptions are the settings of walship fetch.
type fetchOptions struct {
	Archive  string
	SSH      sshOptions
	Prefetch int
	RetryFor time.Duration
	PGData   string
	Name     string // %f
	Dest     string // %p
	// FillAfter runs fetch as the background prefetcher: download the
	// Prefetch segments after this one into the spool, then exit.
	FillAfter string

	// spawn starts the background prefetcher; tests replace it.
	spawn func(args []string) error
}

func fetchCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:      "fetch",
		ArgsUsage: "%f %p",
		Description: `fetch is the restore_command that never waits: it verifies the archived
file as wait does (zstd checksum, size, page header, system identifier, and
for a raw segment its checksum file and every WAL record) and writes it to
%p, or exits 1 at once when the archive does not hold it. walship restore
writes it into postgresql.auto.conf:
   restore_command = 'walship fetch --archive /srv/walship/main %f %p'

"Not found" ends recovery in point-in-time recovery, so fetch must not say
it of an archive it cannot read: it retries for --retry-for (30 s), then
exits 250, which stops the server instead of ending recovery early; start it
again once the archive is back. With standby.signal in the data directory
the server retries by itself (and streams meanwhile), so fetch retries for
3 s unless --retry-for is given, then exits 1 instead. An archive directory
that does not exist, or holds neither walship.json nor WAL, is taken as not
mounted: unreachable, never empty.

--prefetch N (default 8, 0: off): after serving a segment, a background
walship fetch (nice 10) downloads the next N segments, verified, into
pg_wal/walship-spool, and fsyncs each before naming it; the next fetch then
only checks the copy's size and page header (its cluster: the data
directory's pg_control) and renames it, without opening the archive (over
SFTP a login saved), and the server's fsync of it finds nothing left to
write. One prefetcher runs at a time; each served copy leaves the spool,
older ones and other timelines' are removed.
Bound: (N+1) segments on disk (144 MiB at the default and 16 MiB segments),
one process of about 24 MiB, at most two segments of dirty page cache.

` + exitHelp(roleRestore),
		Flags: append([]cli.Flag{
			archiveFlag(),
			&cli.IntFlag{Name: "prefetch", EnvVars: []string{"WALSHIP_PREFETCH"}, Value: defaultPrefetch,
				Usage: "download this many following segments in the background (0: none)"},
			&cli.DurationFlag{Name: "retry-for", Value: waiter.DefaultRetryFor,
				Usage: "how long to retry an archive that cannot be read"},
			&cli.StringFlag{Name: "pgdata", EnvVars: []string{"PGDATA"},
				Usage: "the data directory (default: the current directory, where PostgreSQL runs restore_command)"},
			&cli.StringFlag{Name: "prefetch-after", Hidden: true,
				Usage: "internal: run as the prefetcher of the segments after this one"},
		}, sshFlags()...),
		Action: func(c *cli.Context) error {
			g.ran = true
			opts := fetchOptions{
				Archive:   c.String("archive"),
				SSH:       sshOptionsFrom(c, g.logger),
				Prefetch:  c.Int("prefetch"),
				RetryFor:  c.Duration("retry-for"),
				PGData:    c.String("pgdata"),
				FillAfter: c.String("prefetch-after"),
			}
			if !c.IsSet("retry-for") && standbySignal(opts.PGData) {
				// The server asks again by itself, and streams meanwhile:
				// a long retry here would only hold up replication.
				opts.RetryFor = min(opts.RetryFor, standbyRetryFor)
			}
			if opts.FillAfter == "" {
				if c.NArg() != 2 {
					return usagef("fetch takes %%f %%p; got %d arguments", c.NArg())
				}
				opts.Name, opts.Dest = c.Args().Get(0), c.Args().Get(1)
			}
			err := runFetch(c.Context, g.logger, opts)
			switch {
			case errors.Is(err, waiter.ErrNotFound):
				return quietError{err}
			case errors.Is(err, waiter.ErrUnavailable) && standbySignal(opts.PGData):
				// With standby.signal the server asks again in a few
				// seconds: "not found" ends nothing, while stopping
				// recovery would take a streaming standby down.
				g.logger.Warn("archive unavailable; answering not found, the server asks again", "file", opts.Name, "err", err)
				return quietError{err}
			default:
				return err // stops recovery (exitTable)
			}
		},
	}
}

// defaultPrefetch is fetch's --prefetch: see BENCHMARKS.md, "Fetch", for
// the replay times it was chosen from.
const defaultPrefetch = 8

// prefetcherNice is the prefetcher's nice value (the server runs at 0 unless
// told otherwise; a server niced further keeps its own, as raising a
// priority needs privileges).
const prefetcherNice = 10

// standbyRetryFor is how long fetch retries an unreadable archive by
// default on a standby.signal standby.
const standbyRetryFor = 3 * time.Second

func standbySignal(pgdata string) bool {
	if pgdata == "" {
		pgdata = "."
	}
	_, err := os.Stat(filepath.Join(pgdata, "standby.signal"))
	return err == nil
}

func runFetch(ctx context.Context, logger *slog.Logger, opts fetchOptions) error {
	oneShot()
	if opts.Prefetch < 0 {
		return usagef("--prefetch must not be negative")
	}
	pgdata := opts.PGData
	if pgdata == "" {
		pgdata = "."
	}
	spool := &waiter.Spool{Dir: filepath.Join(pgdata, waiter.DefaultSpoolDir)}
	if opts.FillAfter == "" && opts.Prefetch > 0 && fetchSpooled(logger, opts, pgdata, spool) {
		return nil
	}

	if opts.FillAfter != "" && spool.Filling() {
		// Another prefetcher is at work; the next segment served starts
		// one again, which goes on from there once this one is done.
		logger.Debug("another prefetcher is running", "after", opts.FillAfter)
		return nil
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

	if opts.FillAfter != "" {
		if exp.SegmentSize == 0 {
			return nil
		}
		// Below the server and the fetch it waits for: on a small machine
		// the prefetcher's decoding must not take the startup process's CPU.
		unix.Setpriority(unix.PRIO_PROCESS, 0, prefetcherNice)
		fctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		n, err := spool.Fill(fctx, st, exp, opts.FillAfter, opts.Prefetch, exp.SegmentSize)
		logger.Debug("prefetched", "after", opts.FillAfter, "segments", n, "err", err)
		return err
	}

	f := &waiter.Fetcher{Storage: st, Expect: exp, Logger: logger, RetryFor: opts.RetryFor}
	if opts.Prefetch > 0 {
		f.Spool = spool
	}
	if err := f.Fetch(ctx, opts.Name, opts.Dest); err != nil {
		return err
	}
	n, err := wal.ParseName(opts.Name)
	if opts.Prefetch == 0 && err == nil && n.Kind == wal.Segment && exp.SegmentSize != 0 {
		// A spool left by an earlier run with --prefetch: served first
		// above while it lasts, and not kept beyond that.
		spool.Prune(opts.Name, 0, exp.SegmentSize)
	}
	if opts.Prefetch == 0 || err != nil || n.Kind != wal.Segment || exp.SegmentSize == 0 {
		return nil
	}
	prefetchAfter(logger, opts, pgdata, spool, exp.SegmentSize)
	return nil
}

// fetchSpooled serves a segment from the prefetch spool without opening the
// archive, and reports whether it did: the standby's pg_control says which
// cluster the copy must belong to, and the prefetcher verified the rest
// before it named the copy (as the served copy of Fetcher.Fetch, which
// needs the archive only for its identity, which must be pg_control's).
// Over SFTP that saves each served call its login, about 100 ms; over S3
// its first request. Without a pg_control (not run from a data directory)
// or a copy that passes, the call goes on to the archive.
func fetchSpooled(logger *slog.Logger, opts fetchOptions, pgdata string, spool *waiter.Spool) bool {
	if n, err := wal.ParseName(opts.Name); err != nil || n.Kind != wal.Segment {
		return false
	}
	sysid, err := waiter.ControlSystemID(pgdata)
	if err != nil || sysid == 0 {
		return false // 0 would check no cluster at all
	}
	size, err := spool.TakeSegment(opts.Name, opts.Dest, waiter.Expect{SystemID: sysid})
	if err != nil {
		logger.Warn("cannot use the prefetched copy; fetching from the archive", "file", opts.Name, "err", err)
	}
	if size == 0 {
		return false
	}
	logger.Debug("restored from the prefetch spool, the archive not opened", "file", opts.Name)
	prefetchAfter(logger, opts, pgdata, spool, size)
	return true
}

// prefetchAfter prunes the spool after a segment served and starts the
// prefetcher for the ones after it.
func prefetchAfter(logger *slog.Logger, opts fetchOptions, pgdata string, spool *waiter.Spool, segSize int64) {
	if err := spool.Prune(opts.Name, opts.Prefetch, segSize); err != nil {
		logger.Warn("cannot prune the prefetch spool", "dir", spool.Dir, "err", err)
	}
	spawn := opts.spawn
	if spawn == nil {
		spawn = startPrefetcher
	}
	args := []string{"fetch", "--archive", opts.Archive, "--prefetch", strconv.Itoa(opts.Prefetch),
		"--pgdata", pgdata, "--prefetch-after", opts.Name}
	args = append(args, sshArgs(opts.SSH)...)
	if err := spawn(args); err != nil {
		logger.Warn("cannot start the prefetcher", "err", err)
	}
}

// startPrefetcher is how a fetch without opts.spawn starts the
// prefetcher; this package's tests replace it, since their binary is not
// walship.
var startPrefetcher = spawnPrefetcher

// spawnPrefetcher starts this binary in the background and does not wait
// for it. It stays in the server's process group, so a shutdown stops it.
func spawnPrefetcher(args []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr // the server log
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}
