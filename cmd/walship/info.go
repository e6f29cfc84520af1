package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/walship/walship/internal/cli"

	"github.com/walship/walship/backup"
)

// infoOptions are the settings of walship info.
type infoOptions struct {
	Archive string
	// Repo is a repository of several clusters' archives; see runInfoRepo.
	Repo string
	SSH  sshOptions
	JSON bool
}

func infoCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name: "info",
		Description: `info lists the complete backups (id, times, sizes, LSN range, timeline),
the backups that started but never completed (interrupted, or running now),
and the WAL segments archived on each timeline: first, last, how many, and
the gaps between them. It reads listings and backup.json files only; walship
verify reads every file.

It also sums up the hidden temporary files (.<name>.tmp.<random>) of
writes in progress and of writes that were killed, per directory: how many,
their bytes, and how long ago the oldest was last written. Nothing reads
them; walship cleanup and expire remove those older than --temp-age.

With --repo ROOT instead of --archive, it lists every cluster archive in the
repository ROOT (the subdirectories that hold walship.json, each named by its
subdirectory): its identity, backups, newest backup and newest WAL, gaps,
and the backups that cannot recover to the end of the archive.

Exit codes: 0 listed; 1 the archive (or a cluster of the repository) cannot
be read; 2 usage error.`,
		Flags: append([]cli.Flag{
			archiveFlag(),
			&cli.StringFlag{Name: "repo", EnvVars: []string{"WALSHIP_REPO"},
				Usage: "list every cluster archive in the repository `ROOT` (a directory, sftp:// or s3://) instead of one archive"},
			&cli.BoolFlag{Name: "json", Usage: "print the listing, and the temporary files (temp_files), as JSON"},
		}, sshFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("info takes no arguments; got %d", c.NArg())
			}
			return runInfo(c.Context, g, infoOptions{Archive: c.String("archive"), Repo: c.String("repo"),
				SSH: sshOptionsFrom(c, g.logger), JSON: c.Bool("json")})
		},
	}
}

func runInfo(ctx context.Context, g *globals, opts infoOptions) error {
	if opts.Repo != "" {
		return runInfoRepo(ctx, g, opts)
	}
	st, err := openArchive(ctx, opts.Archive, opts.SSH)
	if err != nil {
		return err
	}
	defer st.Close()
	c, err := backup.ReadCatalog(ctx, st)
	if err != nil {
		return err
	}
	tmp, err := backup.ReadTemp(ctx, st, time.Now())
	if err != nil {
		return err
	}
	if opts.JSON {
		return jsonOut(g.stdout, infoResult{Catalog: c, TempFiles: tmp})
	}
	printCatalog(g.stdout, c)
	printTempSummary(g.stdout, tmp)
	return nil
}

// infoResult is what info --json prints.
type infoResult struct {
	*backup.Catalog
	// TempFiles sums up the temporary files; nil when the archive cannot
	// list them.
	TempFiles *backup.TempSummary `json:"temp_files,omitempty"`
}

// printTempSummary tells how many temporary files the archive holds, and
// where, for info and verify.
func printTempSummary(out io.Writer, s *backup.TempSummary) {
	if s == nil {
		return
	}
	fmt.Fprintln(out)
	if s.Files == 0 {
		fmt.Fprintln(out, "no temporary files")
		return
	}
	fmt.Fprintf(out, "%d temporary files of writes in progress or killed (%s), the oldest last written %s ago; "+
		"walship cleanup and expire remove the old ones\n", s.Files, humanBytes(s.Bytes), humanAge(s.OldestAge))
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "DIRECTORY\tFILES\tSIZE\tOLDEST")
	for _, d := range s.Dirs {
		dir := d.Dir + "/"
		if d.Dir == "." {
			dir = "(root)"
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s ago\n", dir, d.Files, humanBytes(d.Bytes), humanAge(d.OldestAge))
	}
	w.Flush()
}

// humanAge formats an age in seconds for people, to two units: 45s, 12m3s,
// 5h2m, 3d4h.
func humanAge(sec int64) string {
	d := time.Duration(sec) * time.Second
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%ds", d/time.Minute, d%time.Minute/time.Second)
	}
	return fmt.Sprintf("%ds", sec)
}

func printCatalog(out io.Writer, c *backup.Catalog) {
	fmt.Fprintf(out, "archive of system %d, PostgreSQL %d, %s segments\n\n",
		c.Identity.SystemID, c.Identity.PGVersion, humanBytes(c.Identity.SegmentSize))
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if len(c.Backups) == 0 {
		fmt.Fprintln(w, "no complete backups")
	} else {
		fmt.Fprintln(w, "BACKUP\tTYPE\tSTARTED\tTOOK\tSIZE\tSTORED\tLSN\tTIMELINE\tFROM\tRECOVERS ONTO")
		for _, m := range c.Backups {
			from := "primary"
			if m.FromStandby {
				from = "standby"
			}
			onto := "no timeline"
			if tl := c.RecoversOnto[m.ID]; len(tl) > 0 {
				onto = "timeline"
				for i, t := range tl {
					if i > 0 {
						onto += ","
					}
					onto += fmt.Sprintf(" %d", t)
				}
			}
			kind := "full"
			if m.Incremental() {
				kind = "incr on " + m.Parent
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s - %s\t%d\t%s\t%s\n", m.ID, kind, m.StartTime.Format(time.RFC3339),
				m.StopTime.Sub(m.StartTime).Round(time.Second), humanBytes(m.Size), humanBytes(m.Stored),
				m.StartLSN, m.StopLSN, m.StopTimeline, from, onto)
		}
	}
	for _, chain := range backupChains(c.Backups) {
		fmt.Fprintf(w, "chain\t%s\n", chain)
	}
	for _, id := range c.Incomplete {
		fmt.Fprintf(w, "%s\tincomplete: interrupted, or running now\n", id)
	}
	fmt.Fprintln(w)
	if len(c.Timelines) == 0 {
		fmt.Fprintln(w, "no WAL")
	} else {
		fmt.Fprintln(w, "TIMELINE\tFIRST\tLAST\tSEGMENTS\tSTORED\tGAPS")
		for _, t := range c.Timelines {
			gaps := "none"
			if len(t.Gaps) > 0 {
				gaps = ""
				for i, gp := range t.Gaps {
					if i > 0 {
						gaps += ", "
					}
					gaps += gp.First
					if gp.Last != gp.First {
						gaps += "-" + gp.Last
					}
				}
			}
			if t.Segments == 0 {
				fmt.Fprintf(w, "%d\t(history file only)\t\t\t\t\n", t.Timeline)
				continue
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%s\t%s\n", t.Timeline, t.First, t.Last, t.Segments, humanBytes(t.Stored), gaps)
		}
	}
	w.Flush()
	for _, d := range c.Diverged {
		fmt.Fprintf(out, "\nWARNING: timeline %d has %d segments (%s to %s) archived after timeline %d left it at %s:\n"+
			"two servers whose histories diverged archive here; fence the one that should have stopped (walship verify)\n",
			d.Timeline, d.Segments, d.First, d.Last, d.Newer, d.At)
	}
}

// backupChains describes each chain of incremental backups, full backup
// first: "20261201T000000Z <- 20261201T060000Z <- 20261201T120000Z".
func backupChains(backups []backup.Meta) []string {
	children := map[string][]string{}
	for _, m := range backups {
		if m.Incremental() {
			children[m.Parent] = append(children[m.Parent], m.ID)
		}
	}
	var out []string
	var walk func(prefix, id string)
	walk = func(prefix, id string) {
		if len(children[id]) == 0 {
			out = append(out, prefix)
			return
		}
		for _, c := range children[id] {
			walk(prefix+" <- "+c, c)
		}
	}
	for _, m := range backups {
		if !m.Incremental() && len(children[m.ID]) > 0 {
			walk(m.ID, m.ID)
		}
	}
	return out
}
