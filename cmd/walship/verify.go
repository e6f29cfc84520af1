package main

import (
	"context"
	"fmt"

	"github.com/walship/walship/internal/cli"

	"github.com/walship/walship/backup"
)

// verifyOptions are the settings of walship verify.
type verifyOptions struct {
	Archive string
	SSH     sshOptions
	JSON    bool
}

// verifyResult is what --json prints.
type verifyResult struct {
	OK bool `json:"ok"`
	backup.Report
}

func verifyCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name: "verify",
		Description: `verify reads the whole archive: every WAL file must decompress without a
checksum error, and a segment must have its full size and the page header of
the segment its name says, of the archive's cluster; every file of every
complete backup must match the backup's manifest (size and CRC32C). Then it
checks that the WAL from each backup's start to the newest segment of the
newest timeline descending from it is all there: a gap means recovery from
that backup stops early.

It also sums up the hidden temporary files (.<name>.tmp.<random>) of
writes in progress and of writes that were killed, as walship info does:
they are no problem, since nothing reads them, and walship cleanup and
expire remove the old ones.

Exit codes: 0 no problem found; 1 problems found (listed), or the archive
cannot be read; 2 usage error.`,
		Flags: append([]cli.Flag{
			archiveFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
		}, sshFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("verify takes no arguments; got %d", c.NArg())
			}
			return runVerify(c.Context, g, verifyOptions{Archive: c.String("archive"), SSH: sshOptionsFrom(c, g.logger), JSON: c.Bool("json")})
		},
	}
}

func runVerify(ctx context.Context, g *globals, opts verifyOptions) error {
	st, err := openArchive(ctx, opts.Archive, opts.SSH)
	if err != nil {
		return err
	}
	defer st.Close()
	tp := newTermProgress(g.stderr)
	c, r, err := backup.Verify(ctx, st, tp.progress())
	tp.end()
	if err != nil {
		return err
	}
	if opts.JSON {
		if err := jsonOut(g.stdout, verifyResult{OK: len(r.Problems) == 0, Report: r}); err != nil {
			return err
		}
	} else {
		for _, p := range r.Problems {
			fmt.Fprintf(g.stdout, "%s: %s\n", p.File, p.Problem)
		}
		fmt.Fprintf(g.stdout, "checked %d WAL files and %d backups (%d files), %s: %d problems\n",
			r.WALFiles, len(c.Backups), r.BackupFiles, humanBytes(r.Bytes), len(r.Problems))
		printTempSummary(g.stdout, r.TempFiles)
	}
	if len(r.Problems) > 0 {
		return fmt.Errorf("%w: %d found", backup.ErrProblems, len(r.Problems))
	}
	return nil
}
