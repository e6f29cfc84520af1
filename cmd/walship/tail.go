package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/walship/walship/internal/cli"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/shipper"
)

// tailOptions are the settings of walship tail.
type tailOptions struct {
	Archive  string
	SSH      sshOptions
	PGData   string
	DSN      string
	Compress string
	Interval time.Duration
	LogEvery time.Duration
	// MetricsAddr is where to serve Prometheus metrics; empty serves none.
	MetricsAddr string
}

// minTailInterval keeps a typo ("1us") from turning the daemon into a busy
// loop of queries and fsyncs.
const minTailInterval = 10 * time.Millisecond

func tailCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name: "tail",
		Description: `tail runs beside the primary and ships the WAL it has flushed but not yet
archived: every --interval it reads pg_current_wal_flush_lsn(), reads the new
bytes of the current segment from pg_wal and stores them in the archive as an
immutable increment, wal/<segment>.tail/<start>-<end>[.zst]. When the primary
dies, walship wait on a smart trigger restores that tail after the last whole
segment, so the promoted standby loses at most about one interval of commits
instead of up to a whole segment (or archive_timeout).

Run it as the user PostgreSQL runs as (it reads pg_wal), as a service next to
the primary (a systemd unit, say), with the primary's archive_command:
   walship tail --archive /srv/walship/main --pgdata /var/lib/postgresql/15/main

It ships only up to the flush position, never beyond: bytes past it may be
lost in a crash, or stale WAL of a recycled file. When the primary moves on to
a new segment, the rest of the previous one is shipped first. push removes a
segment's increments once the segment is archived whole. A restarted tail
continues where the archive's increments end; a server or archive that fails
is retried with backoff, skipping no byte. It logs its lag every --log-every.
On a standby it waits for the promotion. SIGTERM or SIGINT stop it cleanly:
it logs what it shipped and dies by that signal (which systemd counts as a
clean stop).

With --metrics-addr (say :9854, or 127.0.0.1:9854) it serves Prometheus
metrics at /metrics, without authentication:
   walship_tail_shipped_lsn           where the WAL in the archive ends (an LSN, in bytes)
   walship_tail_lag_bytes             WAL flushed and not yet shipped, as of the last poll
   walship_tail_lag_seconds           time since everything flushed was shipped; alert on it,
                                      as it grows while the server or the archive fails
   walship_tail_increments_total      increments stored
   walship_tail_wal_bytes_total       bytes of WAL shipped
   walship_tail_stored_bytes_total    bytes stored, after compression
   walship_tail_archive_errors_total  archive operations that failed and were retried
   walship_tail_last_archived_segment_info{segment="…"}
                                      1 for the last segment all in the archive
and the go_* and process_* metrics of the daemon.

Exit codes: 1 the archive belongs to another cluster; 2 usage error, or
--metrics-addr cannot be listened on.`,
		Flags: append([]cli.Flag{
			archiveFlag(),
			&cli.StringFlag{Name: "pgdata", EnvVars: []string{"PGDATA"},
				Usage: "the primary's data directory, whose pg_wal is read (default: the server's data_directory, which needs a superuser or pg_read_all_settings)"},
			&cli.StringFlag{Name: "dsn", EnvVars: []string{"WALSHIP_DSN"},
				Usage: "connection string of the primary (default: the PG* environment variables)"},
			&cli.DurationFlag{Name: "interval", Value: shipper.DefaultTailInterval, EnvVars: []string{"WALSHIP_TAIL_INTERVAL"},
				Usage: "how often to ship new WAL: about the most a failover loses"},
			&cli.StringFlag{Name: "compress", Value: "zstd", EnvVars: []string{"WALSHIP_COMPRESS"},
				Usage: "zstd (with checksum) or none (s2 means zstd here: S2 is for push's whole segments)"},
			&cli.DurationFlag{Name: "log-every", Value: shipper.DefaultTailLogEvery, EnvVars: []string{"WALSHIP_TAIL_LOG_EVERY"},
				Usage: "how often to log the lag behind the flush position"},
			&cli.StringFlag{Name: "metrics-addr", EnvVars: []string{"WALSHIP_METRICS_ADDR"},
				Usage: "serve Prometheus metrics at http://`ADDR`/metrics, such as :9854 (default: none)"},
		}, sshFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("tail takes no arguments; got %d", c.NArg())
			}
			return runTail(c.Context, g.logger, tailOptions{
				Archive:  c.String("archive"),
				SSH:      sshOptionsFrom(c, g.logger),
				PGData:   c.String("pgdata"),
				DSN:      c.String("dsn"),
				Compress: c.String("compress"),
				Interval: c.Duration("interval"),
				LogEvery: c.Duration("log-every"),

				MetricsAddr: c.String("metrics-addr"),
			})
		},
	}
}

func runTail(ctx context.Context, logger *slog.Logger, opts tailOptions) error {
	comp, err := archive.ParseCompression(opts.Compress)
	if err != nil {
		return usageError{err}
	}
	comp = comp.ForFiles() // increments stay zstd, which every reader of them takes
	if opts.Interval < minTailInterval {
		return usagef("--interval %v: use at least %v", opts.Interval, minTailInterval)
	}
	if opts.LogEvery <= 0 {
		return usagef("--log-every %v: use a positive duration", opts.LogEvery)
	}
	if opts.Archive == "" {
		return usagef("no archive given: pass --archive DIR or set WALSHIP_ARCHIVE")
	}
	u, err := archive.ParseURL(opts.Archive)
	if err != nil {
		return usageError{err}
	}
	// A daemon outlives an archive that is away for a while (an NFS server
	// rebooting): opening it is retried like any other archive error.
	st := archive.Lazy(u.String(), func(ctx context.Context) (archive.Storage, error) {
		return openArchive(ctx, opts.Archive, opts.SSH)
	})
	defer st.Close()
	src := &shipper.PGSource{ConnString: opts.DSN}
	if opts.PGData != "" {
		src.WALDir = filepath.Join(opts.PGData, "pg_wal")
	}
	defer src.Close()
	t := &shipper.Tail{
		Storage:     st,
		Source:      src,
		Compression: comp,
		Logger:      logger,
		Interval:    opts.Interval,
		LogEvery:    opts.LogEvery,
	}
	if opts.MetricsAddr != "" {
		mctx, stop := context.WithCancel(ctx) // the server also stops when Run fails
		m := newTailMetrics()
		addr, done, err := serveMetrics(mctx, logger, opts.MetricsAddr, m.handler())
		if err != nil {
			stop()
			return err
		}
		defer func() { stop(); <-done }()
		t.Observer = m
		logger.Info("serving metrics", "url", "http://"+addr.String()+"/metrics")
	}
	logger.Info("tail started", "archive", u.String(), "interval", opts.Interval, "compress", comp.String())
	err = t.Run(ctx)
	s := t.Stats()
	logger.Info("tail stopped", "increments", s.Increments, "wal_bytes", s.WALBytes, "stored_bytes", s.StoredBytes)
	return err
}
