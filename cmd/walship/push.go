package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"

	"github.com/urfave/cli/v2"

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
checksum file beside it, which every reader checks.
Pushing a file that is archived already with the same content succeeds (the
server re-archives after a crash); different content under an existing name
fails and leaves the archived file untouched.

` + exitHelp(roleArchive),
		Flags: append([]cli.Flag{
			archiveFlag(),
			&cli.StringFlag{Name: "compress", Value: "zstd", EnvVars: []string{"WALSHIP_COMPRESS"},
				Usage: "zstd (with checksum), or none: the file as it is, with an xxh64 checksum file beside it"},
			&cli.StringFlag{Name: "pgdata",
				Usage: "the data directory of the server that archives, whose global/pg_control names its cluster " +
					"(default: the current directory, where PostgreSQL runs archive_command, else the one %p is in)"},
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
	st, err := openArchive(ctx, opts.Archive, opts.SSH)
	if err != nil {
		return err
	}
	defer st.Close()
	sysid, err := pushingServer(opts.PGData, opts.Path)
	if err != nil {
		return err
	}
	p := &shipper.Pusher{Storage: st, Compression: comp, Logger: logger, SystemID: sysid}
	err = p.Push(ctx, opts.Path, opts.Name)
	if err != nil && errors.Is(err, shipper.ErrConflict) {
		logger.Error("archive conflict", "file", opts.Name, "err", err)
	}
	return err
}

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
