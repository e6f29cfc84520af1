package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"

	"github.com/walship/walship/internal/cli"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/shipper"
	"github.com/walship/walship/waiter"
)

// pushOptions are the settings of walship push.
type pushOptions struct {
	Archive  string
	SSH      sshOptions
	Compress string
	PGData   string // the data directory of the server that archives; "" finds it
	Path     string // %p: the file to ship, relative to the data directory
	Name     string // %f: its WAL file name
	Ahead    shipper.LookAhead
}

func pushCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:      "push",
		ArgsUsage: "%p %f",
		Description: `push copies one WAL segment, .history, .backup or .partial file into the
archive, atomically and durably: it exits 0 only when the file is safe on disk.

In the primary's postgresql.conf:
   archive_mode = on
   archive_command = 'walship push --archive /srv/walship/main %p %f'

The first segment pushed into an empty archive records the cluster's system
identifier and segment size in walship.json; a segment from another cluster,
a truncated segment, or a name that is not a WAL file name is refused.
.history and .backup files name no cluster: push takes them only from the
archive's own server, whose global/pg_control it reads in the data
directory PostgreSQL runs it in (or --pgdata), and checks that a history
file extends its parent timeline's and that a .backup file is a backup
history file. --compress none stores the file as it is and an xxh64
checksum file beside it, which every reader checks. --compress s2 stores
segments in S2 (Snappy's successor): about twice zstd's bytes at half its
CPU, for a primary whose CPUs, not its archive's disk or network, bound
archiving; .history and .backup files stay zstd. Readers take every kind,
so the setting can change at any time.
Pushing a file that is archived already with the same content succeeds (the
server re-archives after a crash); different content under an existing name
fails and leaves the archived file untouched.

After an outage of the archive, PostgreSQL's backlog of segments drains one
push per call, one after the other. With --look-ahead N a push also ships
up to N of the next segments marked ready in pg_wal/archive_status that the
archive lacks, --jobs files at a time, and exits once every one is done.
Each file it ships is marked, once durable, with an extended attribute
(user.walship.shipped); PostgreSQL's call for it then answers without
opening the archive while the file is unchanged (same size, inode, time
and XXH64), and compares with the archive otherwise. With no backlog it
ships its own file only. It is off by default; over SFTP --look-ahead 8
--jobs 4 drains a backlog in 0.4 of the time, the later calls skipping
their login; on a local disk, where compression keeps both cores busy, it
gains little.

` + exitHelp(roleArchive),
		Flags: append([]cli.Flag{
			archiveFlag(),
			&cli.StringFlag{Name: "compress", Value: "zstd", EnvVars: []string{"WALSHIP_COMPRESS"},
				Usage: "zstd (with checksum); s2: segments in S2, faster, twice the bytes; or none: the file as it is, with an xxh64 checksum file beside it"},
			&cli.StringFlag{Name: "pgdata",
				Usage: "the data directory of the server that archives, whose global/pg_control names its cluster " +
					"(default: the current directory, where PostgreSQL runs archive_command, else the one %p is in)"},
			&cli.IntFlag{Name: "look-ahead", Value: defaultLookAhead, EnvVars: []string{"WALSHIP_LOOK_AHEAD"},
				Usage: "also ship up to `N` more segments marked ready in pg_wal/archive_status, so a backlog drains in parallel (0: only %p)"},
			&cli.IntFlag{Name: "jobs", Value: defaultPushJobs, EnvVars: []string{"WALSHIP_PUSH_JOBS"},
				Usage: "push up to `N` files at once when looking ahead"},
		}, sshFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usagef("push takes 2 arguments, %%p and %%f; got %d", c.NArg())
			}
			return runPush(c.Context, g.logger, pushOptions{
				Archive:  c.String("archive"),
				SSH:      sshOptionsFrom(c, g.logger),
				Compress: c.String("compress"),
				PGData:   c.String("pgdata"),
				Path:     c.Args().Get(0),
				Name:     c.Args().Get(1),
				Ahead:    shipper.LookAhead{Max: c.Int("look-ahead"), Jobs: c.Int("jobs")},
			})
		},
	}
}

func runPush(ctx context.Context, logger *slog.Logger, opts pushOptions) error {
	oneShot()
	comp, err := archive.ParseCompression(opts.Compress)
	if err != nil {
		return usageError{err}
	}
	if opts.Ahead.Max < 0 || opts.Ahead.Jobs < 1 {
		return usagef("--look-ahead must be 0 or more and --jobs 1 or more; got %d and %d", opts.Ahead.Max, opts.Ahead.Jobs)
	}
	sysid, err := pushingServer(opts.PGData, opts.Path)
	if err != nil {
		return err
	}
	// A segment an earlier look-ahead push shipped, unchanged since:
	// archived, and durable there, without opening the archive.
	if shipper.ShippedAhead(opts.Path, opts.Name, opts.Archive, sysid) {
		logger.Info("already archived with identical content", "file", opts.Name, "archive", opts.Archive,
			"compared", "shipped ahead by an earlier push, unchanged since")
		return nil
	}
	st, err := openArchive(ctx, opts.Archive, opts.SSH)
	if err != nil {
		return err
	}
	defer st.Close()
	p := &shipper.Pusher{Storage: st, Compression: comp, Logger: logger, SystemID: sysid, ArchiveID: opts.Archive}
	err = p.PushAhead(ctx, opts.Path, opts.Name, opts.Ahead)
	if err != nil && errors.Is(err, shipper.ErrConflict) {
		logger.Error("archive conflict", "file", opts.Name, "err", err)
	}
	return err
}

// The look-ahead defaults (BENCHMARKS.md, "Catch-up after an outage").
const (
	defaultLookAhead = 0
	defaultPushJobs  = 2
)

// pushingServer returns the system identifier of the server that archives
// path: from pgdata's global/pg_control when given, else from the current
// directory's (PostgreSQL runs archive_command in the data directory), else
// from the data directory that path is in (DIR/pg_wal/…). It returns 0 when
// there is none: push is run by hand, outside a data directory.
func pushingServer(pgdata, path string) (uint64, error) {
	dirs := []string{pgdata}
	if pgdata == "" {
		dirs = []string{"."}
		if d := filepath.Dir(path); filepath.Base(d) == "pg_wal" {
			dirs = append(dirs, filepath.Dir(d))
		}
	}
	for _, d := range dirs {
		id, err := waiter.ControlSystemID(d)
		switch {
		case err == nil:
			return id, nil
		case errors.Is(err, fs.ErrNotExist) && pgdata == "":
			continue
		default:
			return 0, fmt.Errorf("read the system identifier of the server archiving (%s): %w", d, err)
		}
	}
	return 0, nil
}
