package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/backup"
	"github.com/walship/walship/waiter"
	"github.com/walship/walship/wal"
)

// cleanupOptions are the settings of walship cleanup.
type cleanupOptions struct {
	Archive string
	SSH     sshOptions
	Restart string // %r
	DryRun  bool
	JSON    bool
}

func cleanupCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:      "cleanup",
		Usage:     "remove archived segments a standby no longer needs (archive_cleanup_command)",
		ArgsUsage: "%r",
		Description: `cleanup is a standby's archive_cleanup_command, as pg_archivecleanup is: it
removes the archived WAL segments older than %r, the oldest segment the
standby still needs to restart, on every timeline. In the standby's
postgresql.conf:
   archive_cleanup_command = 'walship cleanup --archive /srv/walship/main %r'

It never removes .history, .backup or .partial files, and keeps the WAL the
oldest base backup in the archive needs, whatever %r says, so point-in-time
recovery from every backup keeps working (walship expire removes that WAL
with its backup). Only clean up an archive that feeds this one standby: a
second standby, further behind, would lose WAL it needs. walship wait
--cleanup does the same from restore_command. --dry-run lists what would go.

%r may also name a .backup or .partial file, which stands for its segment.

Exit codes: 0 done; 1 failed (PostgreSQL logs a warning and goes on);
2 usage error.`,
		Flags: append([]cli.Flag{
			archiveFlag(),
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "only list what would be removed"},
			&cli.BoolFlag{Name: "json", Usage: "print what was removed as JSON"},
		}, sshFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("cleanup takes %%r; got %d arguments", c.NArg())
			}
			return runCleanup(c.Context, g, cleanupOptions{Archive: c.String("archive"), SSH: sshOptionsFrom(c, g.logger),
				Restart: c.Args().First(), DryRun: c.Bool("dry-run"), JSON: c.Bool("json")})
		},
	}
}

// cleanupResult is what cleanup --json prints.
type cleanupResult struct {
	Restart  string   `json:"restart"`
	KeptFrom string   `json:"kept_from,omitempty"` // the oldest backup's first segment: it and all later WAL stay
	DryRun   bool     `json:"dry_run"`
	Removed  []string `json:"removed"`
}

func runCleanup(ctx context.Context, g *globals, opts cleanupOptions) error {
	if _, err := waiter.CleanupPoint(opts.Restart); err != nil {
		return usagef("%%r: %v", err)
	}
	st, err := openArchive(ctx, opts.Archive, opts.SSH)
	if err != nil {
		return err
	}
	defer st.Close()
	removed, keep, err := cleanup(ctx, st, opts.Restart, opts.DryRun, g.logger)
	if err != nil {
		return err
	}
	if opts.JSON {
		return jsonOut(g.stdout, cleanupResult{Restart: opts.Restart, KeptFrom: keep, DryRun: opts.DryRun, Removed: removed})
	}
	verb := "removed"
	if opts.DryRun {
		verb = "would remove"
	}
	fmt.Fprintf(g.stdout, "%s %d WAL segments older than %s\n", verb, len(removed), opts.Restart)
	return nil
}

// cleanup removes what the restart point restart no longer needs, keeping
// the WAL of the oldest backup, and returns the names removed and that
// backup's first segment ("" when the archive holds no backup).
func cleanup(ctx context.Context, st archive.Storage, restart string, dryRun bool, logger *slog.Logger) ([]string, string, error) {
	l, err := backup.List(ctx, st)
	if err != nil {
		return nil, "", fmt.Errorf("cleanup: cannot tell which WAL the archive's backups need, so nothing was removed: %w", err)
	}
	var keep string
	var oldest wal.Name
	for _, m := range l.Complete {
		n, err := waiter.CleanupPoint(m.StartWAL)
		if err != nil {
			return nil, "", fmt.Errorf("cleanup: backup %s: start WAL %q: %w", m.ID, m.StartWAL, err)
		}
		if keep == "" || n.Log < oldest.Log || (n.Log == oldest.Log && n.Seg < oldest.Seg) {
			keep, oldest = m.StartWAL, n
		}
	}
	removed, err := waiter.Cleanup(ctx, st, restart, waiter.CleanupOptions{KeepFrom: keep, DryRun: dryRun, Log: logger})
	if err != nil {
		return nil, "", err
	}
	if len(removed) > 0 {
		logger.Info("removed archived segments older than the restart point",
			"files", len(removed), "restart", restart, "kept_from", keep, "dry_run", dryRun)
	}
	return removed, keep, nil
}
