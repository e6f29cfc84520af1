package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/walship/walship/backup"
)

// expireOptions are the settings of walship expire.
type expireOptions struct {
	Archive string
	SSH     sshOptions
	Keep    int
	DryRun  bool
	JSON    bool
}

func expireCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:  "expire",
		Usage: "remove old backups and the WAL only they need",
		Description: `expire keeps the newest --keep complete backups and removes older ones,
then every WAL segment, .partial and .backup file older than the segment the
oldest kept backup starts in (on every timeline). Interrupted backups that
started before the oldest kept one, and over a day ago, go too. Timeline history files always
stay. --dry-run lists what would go.

The WAL kept is what point-in-time recovery from the kept backups needs. A
standby fed from this archive needs WAL from its own restart point: do not
expire past it (walship wait --cleanup, or archive_cleanup_command, removes
a standby's WAL as it goes instead).

Exit codes: 0 done; 1 failed; 2 usage error.`,
		Flags: append([]cli.Flag{
			archiveFlag(),
			&cli.IntFlag{Name: "keep", Usage: "how many complete backups to keep (at least 1)"},
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "only list what would be removed"},
			&cli.BoolFlag{Name: "json", Usage: "print what was removed as JSON"},
		}, sshFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("expire takes no arguments; got %d", c.NArg())
			}
			return runExpire(c.Context, g, expireOptions{Archive: c.String("archive"), SSH: sshOptionsFrom(c, g.logger), Keep: c.Int("keep"),
				DryRun: c.Bool("dry-run"), JSON: c.Bool("json")})
		},
	}
}

func runExpire(ctx context.Context, g *globals, opts expireOptions) error {
	if opts.Keep < 1 {
		return usagef("--keep must be at least 1")
	}
	st, err := openArchive(ctx, opts.Archive, opts.SSH)
	if err != nil {
		return err
	}
	defer st.Close()
	ex, err := backup.Expire(ctx, st, opts.Keep, opts.DryRun, g.logger)
	if err != nil {
		return err
	}
	if opts.JSON {
		return jsonOut(g.stdout, ex)
	}
	verb := "removed"
	if opts.DryRun {
		verb = "would remove"
	}
	fmt.Fprintf(g.stdout, "%s %d backups, %d interrupted backups and %d WAL files (%s); oldest backup kept: %s\n",
		verb, len(ex.Backups), len(ex.Incomplete), len(ex.WAL), humanBytes(ex.Stored), ex.OldestKept)
	return nil
}
