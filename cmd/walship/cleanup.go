package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/walship/walship/internal/cli"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/backup"
	"github.com/walship/walship/waiter"
)

// cleanupOptions are the settings of walship cleanup.
type cleanupOptions struct {
	Archive    string
	SSH        sshOptions
	Restart    string // %r
	DryRun     bool
	JSON       bool
	StaleAfter time.Duration
	TempAge    time.Duration
}

func cleanupCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:      "cleanup",
		ArgsUsage: "%r",
		Description: `cleanup is a standby's archive_cleanup_command, as pg_archivecleanup is: it
removes the archived WAL segments older than %r, the oldest segment the
standby still needs to restart, on every timeline. In the standby's
postgresql.conf:
   archive_cleanup_command = 'walship cleanup --archive /srv/walship/main %r'

It never removes .history, .backup or .partial files, and keeps, whatever %r
says, the WAL from the start of the oldest base backup in the archive, so
point-in-time recovery from every backup keeps working (walship expire
removes that WAL with its backup), and from the start of every backup still
running (walship backup records each in backups/<id>/inprogress-<n>.json and
renews that every minute), so that a first backup can complete. While a
backup is starting, before the server has told it where, nothing is removed.
A backup whose marker is older than --stale-after has died: it keeps no WAL,
and cleanup logs a warning naming it (walship expire removes it). If the
backups or their markers cannot be read, nothing is removed.

It also removes the temporary files that killed writes left (hidden,
.<name>.tmp.<random>): those last written --temp-age ago or longer (1h)
and, under backups/, also --stale-after ago and not in the directory of a
backup running or starting, whose tar streams grow in such files.

Only clean up an archive that feeds this one standby: a second standby,
further behind, would lose WAL it needs. walship wait --cleanup does the
same from restore_command (with the default --stale-after). --dry-run lists
what would go; --dry-run and --json also show the backups in progress kept,
and the temporary files.

%r may also name a .backup or .partial file, which stands for its segment.

Exit codes: 0 done; 1 failed (PostgreSQL logs a warning and goes on);
2 usage error.`,
		Flags: append([]cli.Flag{
			archiveFlag(),
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "only list what would be removed"},
			&cli.BoolFlag{Name: "json", Usage: "print what was removed, and the backups in progress kept, as JSON"},
			staleAfterFlag(),
			tempAgeFlag(),
		}, sshFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("cleanup takes %%r; got %d arguments", c.NArg())
			}
			return runCleanup(c.Context, g, cleanupOptions{Archive: c.String("archive"), SSH: sshOptionsFrom(c, g.logger),
				Restart: c.Args().First(), DryRun: c.Bool("dry-run"), JSON: c.Bool("json"), StaleAfter: c.Duration("stale-after"),
				TempAge: c.Duration("temp-age")})
		},
	}
}

// minStaleAfter bounds --stale-after from below: a shorter limit would take
// a backup that is only slow to reach the archive for dead, and remove its
// WAL.
const minStaleAfter = time.Minute

// staleAfterFlag is --stale-after, shared by backup, cleanup and expire so
// that one config file key or WALSHIP_STALE_AFTER sets all three.
func staleAfterFlag() cli.Flag {
	return &cli.DurationFlag{Name: "stale-after", Value: backup.DefaultStaleAfter, EnvVars: []string{"WALSHIP_STALE_AFTER"},
		Usage: "a backup in progress whose marker (backups/<id>/inprogress-<n>.json, renewed every minute) is older than this has died: " +
			"its WAL is no longer kept (at least 1m)"}
}

func checkStaleAfter(d time.Duration) error {
	if d < minStaleAfter {
		return usagef("--stale-after must be at least %v, not %v", minStaleAfter, d)
	}
	return nil
}

// minTempAge bounds --temp-age from below: a write in progress keeps its
// temporary file's modification time fresh, but a source that pauses (a
// busy server sending a backup) must not lose its file.
const minTempAge = time.Minute

// tempAgeFlag is --temp-age, shared by cleanup and expire.
func tempAgeFlag() cli.Flag {
	return &cli.DurationFlag{Name: "temp-age", Value: backup.DefaultTempAge, EnvVars: []string{"WALSHIP_TEMP_AGE"},
		Usage: "remove the temporary files of killed writes (.<name>.tmp.<random>) last written this long ago or longer; " +
			"under backups/ at least --stale-after, and never those of a backup in progress (at least 1m)"}
}

func checkTempAge(d time.Duration) error {
	if d < minTempAge {
		return usagef("--temp-age must be at least %v, not %v", minTempAge, d)
	}
	return nil
}

// removeTemp removes the temporary files of killed writes, for cleanup and
// expire. After an error it still returns what it removed, if anything,
// for the caller to report before failing.
func removeTemp(ctx context.Context, st archive.Storage, age, staleAfter time.Duration, dryRun bool, logger *slog.Logger) (*backup.TempRemoved, error) {
	res, err := backup.RemoveTemp(ctx, st, backup.TempOptions{Age: age, StaleAfter: staleAfter, DryRun: dryRun, Log: logger})
	if err != nil {
		return res, fmt.Errorf("temporary files: %w", err)
	}
	return res, nil
}

// printTempRemoved tells what removeTemp removed.
func printTempRemoved(w io.Writer, res *backup.TempRemoved, dryRun bool) {
	if res == nil || len(res.Removed)+res.Kept == 0 {
		return
	}
	verb := "removed"
	if dryRun {
		verb = "would remove"
		for _, f := range res.Removed {
			fmt.Fprintf(w, "would remove %s (%s, last written %s)\n", f.Path, humanBytes(f.Size), f.Modified.Format(time.RFC3339))
		}
	}
	fmt.Fprintf(w, "%s %d temporary files of interrupted writes (%s); kept %d written less than %s ago (%s under backups/) or of backups in progress\n",
		verb, len(res.Removed), humanBytes(res.Bytes), res.Kept, humanAge(res.Age), humanAge(res.BackupAge))
}

// cleanupResult is what cleanup --json prints.
type cleanupResult struct {
	Restart string `json:"restart"`
	// KeptFrom is the first segment of the oldest backup, complete or in
	// progress: it and all later WAL stay.
	KeptFrom string `json:"kept_from,omitempty"`
	KeptAll  bool   `json:"kept_all,omitempty"` // a backup is starting: no WAL removed
	// InProgress lists the backups in progress whose WAL was kept, Ignored
	// those taken for dead (abandoned or interrupted), which keep none.
	InProgress []backup.Pending `json:"in_progress"`
	Ignored    []backup.Pending `json:"ignored"`
	DryRun     bool             `json:"dry_run"`
	Removed    []string         `json:"removed"`
	// TempFiles is what became of the temporary files of killed writes;
	// nil when the archive cannot list them.
	TempFiles *backup.TempRemoved `json:"temp_files,omitempty"`
}

func runCleanup(ctx context.Context, g *globals, opts cleanupOptions) error {
	if _, err := waiter.CleanupPoint(opts.Restart); err != nil {
		return usagef("%%r: %v", err)
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
	res, err := cleanupWith(ctx, st, opts.Restart, opts.DryRun, opts.StaleAfter, g.logger)
	if err != nil {
		return err
	}
	// The WAL is done: what becomes of the temporary files is told either
	// way, and an error about them comes last.
	var tempErr error
	res.TempFiles, tempErr = removeTemp(ctx, st, opts.TempAge, opts.StaleAfter, opts.DryRun, g.logger)
	if opts.JSON {
		if err := jsonOut(g.stdout, res); err != nil {
			return err
		}
		return tempErr
	}
	verb := "removed"
	if opts.DryRun {
		verb = "would remove"
	}
	fmt.Fprintf(g.stdout, "%s %d WAL segments older than %s\n", verb, len(res.Removed), opts.Restart)
	printInProgress(g.stdout, res.InProgress, res.Ignored)
	printTempRemoved(g.stdout, res.TempFiles, opts.DryRun)
	return tempErr
}

// printInProgress tells which backups in progress kept their WAL, and
// which were taken for dead.
func printInProgress(w io.Writer, kept, ignored []backup.Pending) {
	for _, p := range kept {
		if p.State == backup.Starting {
			fmt.Fprintf(w, "kept all WAL: backup %s is starting\n", p.ID)
			continue
		}
		fmt.Fprintf(w, "kept the WAL from %s on for backup %s in progress (host %s, pid %d, heartbeat %s)\n",
			p.Marker.StartWAL, p.ID, p.Marker.Host, p.Marker.PID, p.Marker.Heartbeat.Format(time.RFC3339))
	}
	for _, p := range ignored {
		if p.State == backup.Abandoned {
			fmt.Fprintf(w, "ignored backup %s: its marker was last renewed at %s (host %s, pid %d), it has died; remove it or run walship expire\n",
				p.ID, p.Marker.Heartbeat.Format(time.RFC3339), p.Marker.Host, p.Marker.PID)
		}
	}
}

// cleanup removes what the restart point restart no longer needs, keeping
// the WAL of the oldest backup and of every backup in progress, and returns
// the names removed and what it kept. walship wait --cleanup calls it too.
func cleanup(ctx context.Context, st archive.Storage, restart string, dryRun bool, logger *slog.Logger) ([]string, cleanupResult, error) {
	res, err := cleanupWith(ctx, st, restart, dryRun, backup.DefaultStaleAfter, logger)
	return res.Removed, res, err
}

func cleanupWith(ctx context.Context, st archive.Storage, restart string, dryRun bool, staleAfter time.Duration, logger *slog.Logger) (cleanupResult, error) {
	res := cleanupResult{Restart: restart, DryRun: dryRun}
	removed, err := waiter.Cleanup(ctx, st, restart, waiter.CleanupOptions{DryRun: dryRun, Log: logger,
		Backups: func(ctx context.Context) (waiter.Keep, error) {
			c, err := backup.ReadCensus(ctx, st, backup.CensusOptions{StaleAfter: staleAfter, Log: logger})
			if err != nil {
				return waiter.Keep{}, err
			}
			from, all := c.KeepWAL(c.Complete)
			res.KeptFrom, res.KeptAll = from, all
			for _, p := range c.Pending {
				if p.KeepsWAL {
					res.InProgress = append(res.InProgress, p)
				} else {
					res.Ignored = append(res.Ignored, p)
				}
			}
			return waiter.Keep{From: from, All: all}, nil
		}})
	if err != nil {
		return cleanupResult{}, err
	}
	res.Removed = removed
	if len(removed) > 0 {
		logger.Info("removed archived segments older than the restart point",
			"files", len(removed), "restart", restart, "kept_from", res.KeptFrom, "dry_run", dryRun)
	}
	return res, nil
}
