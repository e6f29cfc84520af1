package main

import (
	"context"
	"fmt"
	"time"

	"github.com/walship/walship/internal/cli"

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
	TempAge    time.Duration
}

// expireResult is what expire --json prints.
type expireResult struct {
	backup.Expired
	// TempFiles is what became of the temporary files of killed writes;
	// nil when the archive cannot list them.
	TempFiles *backup.TempRemoved `json:"temp_files,omitempty"`
}

func expireCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name: "expire",
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

Then it removes the temporary files that killed writes left (hidden,
.<name>.tmp.<random>): those last written --temp-age ago or longer (1h)
and, under backups/, also --stale-after ago and not in the directory of a
backup running or starting, whose tar streams grow in such files. --dry-run
and --json list them.

The WAL kept is what point-in-time recovery from the kept backups needs. A
standby fed from this archive needs WAL from its own restart point: do not
expire past it (walship wait --cleanup, or archive_cleanup_command, removes
a standby's WAL as it goes instead).

Exit codes: 0 done; 1 failed; 2 usage error.`,
		Flags: append([]cli.Flag{
			archiveFlag(),
			&cli.IntFlag{Name: "keep", DefaultText: "none, required",
				Usage: "how many complete backups to keep, at least 1; expire removes nothing without it"},
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "only list what would be removed"},
			&cli.BoolFlag{Name: "json", Usage: "print what was removed, and the backups in progress kept, as JSON"},
			staleAfterFlag(),
			tempAgeFlag(),
		}, sshFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("expire takes no arguments; got %d", c.NArg())
			}
			return runExpire(c.Context, g, expireOptions{Archive: c.String("archive"), SSH: sshOptionsFrom(c, g.logger), Keep: c.Int("keep"),
				DryRun: c.Bool("dry-run"), JSON: c.Bool("json"), StaleAfter: c.Duration("stale-after"), TempAge: c.Duration("temp-age")})
		},
	}
}

func runExpire(ctx context.Context, g *globals, opts expireOptions) error {
	if opts.Keep < 1 {
		return usagef("--keep N is required: how many complete backups to keep (at least 1), e.g. walship expire --keep 7")
	}
	if err := checkStaleAfter(opts.StaleAfter); err != nil {
		return err
	}
	if err := checkTempAge(opts.TempAge); err != nil {
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
	// After the backups: the directory of one expired goes with the last
	// temporary file in it. What was expired is told either way, and an
	// error about the temporary files comes last.
	tmp, tempErr := removeTemp(ctx, st, opts.TempAge, opts.StaleAfter, opts.DryRun, g.logger)
	if opts.JSON {
		if err := jsonOut(g.stdout, expireResult{Expired: ex, TempFiles: tmp}); err != nil {
			return err
		}
		return tempErr
	}
	verb := "removed"
	if opts.DryRun {
		verb = "would remove"
	}
	fmt.Fprintf(g.stdout, "%s %d backups, %d interrupted backups and %d WAL files (%s); oldest backup kept: %s\n",
		verb, len(ex.Backups), len(ex.Incomplete), len(ex.WAL), humanBytes(ex.Stored), ex.OldestKept)
	printInProgress(g.stdout, ex.InProgress, nil)
	printTempRemoved(g.stdout, tmp, opts.DryRun)
	return tempErr
}
