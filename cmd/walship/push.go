package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/shipper"
)

// pushOptions are the settings of walship push.
type pushOptions struct {
	Archive  string
	SSH      sshOptions
	Compress string
	Path     string // %p: the file to ship, relative to the data directory
	Name     string // %f: its WAL file name
}

func pushCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:      "push",
		Usage:     "archive one WAL file (the primary's archive_command)",
		ArgsUsage: "%p %f",
		Description: `push copies one WAL segment, .history, .backup or .partial file into the
archive, atomically and durably: it exits 0 only when the file is safe on disk.

In the primary's postgresql.conf:
   archive_mode = on
   archive_command = 'walship push --archive /srv/walship/main %p %f'

The first segment pushed into an empty archive records the cluster's system
identifier and segment size in walship.json; a segment from another cluster,
a truncated segment, or a name that is not a WAL file name is refused.
Pushing a file that is archived already with the same content succeeds (the
server re-archives after a crash); different content under an existing name
fails and leaves the archived file untouched.

` + exitHelp(roleArchive),
		Flags: append([]cli.Flag{
			archiveFlag(),
			&cli.StringFlag{Name: "compress", Value: "zstd", EnvVars: []string{"WALSHIP_COMPRESS"},
				Usage: "zstd (with checksum) or none"},
		}, sshFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usagef("push takes 2 arguments, %%p and %%f; got %d", c.NArg())
			}
			return runPush(c.Context, g.logger, pushOptions{
				Archive:  c.String("archive"),
				SSH:      sshOptionsFrom(c, g.logger),
				Compress: c.String("compress"),
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
	p := &shipper.Pusher{Storage: st, Compression: comp, Logger: logger}
	err = p.Push(ctx, opts.Path, opts.Name)
	if err != nil && errors.Is(err, shipper.ErrConflict) {
		logger.Error("archive conflict", "file", opts.Name, "err", err)
	}
	return err
}
