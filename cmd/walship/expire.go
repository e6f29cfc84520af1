package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/walship/walship/backup"
)

// expireOptions are the settings of walship expire.
type expireOptions struct {
	Archive    string
	SSH        sshOptions
	Keep       int
	DryRun     bool
	JSON       bool
	StaleAfter time.Duration
}

func expireCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:  "expire",
		Usage: "remove old backups and the WAL only they need",
		Description: `expire keeps the newest --keep complete backups and removes older ones,
then every WAL segment, .partial and .backup file older than the segment the
oldest kept backup starts in (on every timeline). Timeline history files
always stay. --dry-run lists what would go.

Backups still running are never touched, and their WAL stays too: expire
keeps every segment from the start of the oldest backup in progress (walship
backup records each in backups/<id>/inprogress-<n>.json and renews that
every minute), and removes no WAL at all while a backup is starting, before
the server has told it where. A backup whose marker is older than
--stale-after has died (it is "abandoned"): expire removes it. A backup that
died before writing a marker, or was taken by a walship without markers, goes
once it started over a day ago and before the oldest kept backup. If the
backups or their markers cannot be read, nothing is removed. --dry-run and
--json show the backups in progress kept.

The WAL kept is what point-in-time recovery from the kept backups needs. A
standby fed from this archive needs WAL from its own restart point: do not
expire past it (walship wait --cleanup, or archive_cleanup_command, removes
a standby's WAL as it goes instead).

Exit codes: 0 done; 1 failed; 2 usage error.`,
		Flags: append([]cli.Flag{
			archiveFlag(),
			&cli.IntFlag{Name: "keep", Usage: "how many complete backups to keep (at least 1)"},
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "only list what would be removed"},
			&cli.BoolFlag{Name: "json", Usage: "print what was removed, and the backups in progress kept, as JSON"},
			staleAfterFlag(),
		}, sshFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("expire takes no arguments; got %d", c.NArg())
			}
			return runExpire(c.Context, g, expireOptions{Archive: c.String("archive"), SSH: sshOptionsFrom(c, g.logger), Keep: c.Int("keep"),
				DryRun: c.Bool("dry-run"), JSON: c.Bool("json"), StaleAfter: c.Duration("stale-after")})
		},
	}
}

func runExpire(ctx context.Context, g *globals, opts expireOptions) error {
	if opts.Keep < 1 {
		return usagef("--keep must be at least 1")
	}
	if err := checkStaleAfter(opts.StaleAfter); err != nil {
		return err
	}
	st, err := openArchive(ctx, opts.Archive, opts.SSH)
	if err != nil {
		return err
	}
	defer st.Close()
	ex, err := backup.Expire(ctx, st, backup.ExpireOptions{Keep: opts.Keep, DryRun: opts.DryRun, StaleAfter: opts.StaleAfter, Log: g.logger})
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
	printInProgress(g.stdout, ex.InProgress, nil)
	return nil
}
