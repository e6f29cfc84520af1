package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/backup"
)

// repoCluster is one cluster of walship info --repo.
type repoCluster struct {
	Name string `json:"name"`
	// Error says why the cluster's archive could not be read.
	Error string `json:"error,omitempty"`
	*backup.Health
	// NewestWALEnd is where the newest segment ends, as an LSN.
	NewestWALEnd string `json:"newest_wal_end_lsn,omitempty"`
}

// repoResult is what info --repo --json prints.
type repoResult struct {
	Repo     string        `json:"repo"`
	Clusters []repoCluster `json:"clusters"`
}

// runInfoRepo lists the clusters of the repository opts.Repo: its
// subdirectories that hold walship.json. A cluster that cannot be read is
// listed with its error, and makes info fail once all are listed.
func runInfoRepo(ctx context.Context, g *globals, opts infoOptions) error {
	root, err := openRepo(ctx, opts.Repo, opts.SSH)
	if err != nil {
		return err
	}
	defer root.Close()
	names, err := archive.ListClusters(ctx, root)
	if err != nil {
		return fmt.Errorf("list the clusters of repository %s: %w", root, err)
	}
	res := repoResult{Repo: root.String(), Clusters: []repoCluster{}}
	failed := 0
	for _, name := range names {
		rc := repoCluster{Name: name}
		st, err := archive.Sub(root, name)
		if err == nil {
			st, err = withEncryption(st, opts.SSH)
		}
		if err == nil {
			rc.Health, err = (&backup.Tracker{Storage: st}).Refresh(ctx)
		}
		if err != nil {
			rc.Error = err.Error()
			failed++
		} else if rc.WAL != nil {
			rc.NewestWALEnd = rc.WAL.End.String()
		}
		res.Clusters = append(res.Clusters, rc)
	}
	if opts.JSON {
		err = jsonOut(g.stdout, res)
	} else {
		printRepo(g.stdout, res)
	}
	if err == nil && failed > 0 {
		err = fmt.Errorf("%d of the %d clusters in %s cannot be read", failed, len(names), root)
	}
	return err
}

func printRepo(out io.Writer, r repoResult) {
	if len(r.Clusters) == 0 {
		fmt.Fprintf(out, "repository %s holds no cluster archives (subdirectories with walship.json)\n", r.Repo)
		return
	}
	fmt.Fprintf(out, "repository %s: %d clusters\n\n", r.Repo, len(r.Clusters))
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CLUSTER\tSYSTEM\tPG\tBACKUPS\tNEWEST BACKUP\tCOMPLETED\tNEWEST WAL\tARCHIVED\tMISSING\tUNUSABLE")
	for _, c := range r.Clusters {
		if c.Health == nil {
			fmt.Fprintf(w, "%s\terror: %s\n", c.Name, c.Error)
			continue
		}
		h := c.Health
		newest, completed := "none", "-"
		if h.Newest != nil {
			newest, completed = h.Newest.ID, h.Newest.StopTime.Format(time.RFC3339)
		}
		seg, archived := "none", "-"
		if h.WAL != nil {
			seg, archived = h.WAL.Segment, h.WAL.Archived.Format(time.RFC3339)
		}
		gaps := 0
		for _, t := range h.Timelines {
			gaps += t.Missing
		}
		unusable := "none"
		if len(h.Unusable) > 0 {
			unusable = strings.Join(h.Unusable, ",")
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%d\t%s\n", c.Name, h.Identity.SystemID, h.Identity.PGVersion,
			h.Backups, newest, completed, seg, archived, gaps, unusable)
	}
	w.Flush()
}
