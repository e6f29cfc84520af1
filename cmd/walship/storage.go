package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/local"
)

// archiveFlag is the --archive flag that every command touching the archive
// takes.
func archiveFlag() cli.Flag {
	return &cli.StringFlag{Name: "archive", Aliases: []string{"a"}, EnvVars: []string{"WALSHIP_ARCHIVE"},
		Usage: "the archive: a directory (/srv/walship/main, also on NFS)"}
}

// openArchive opens the archive that rawURL names.
func openArchive(ctx context.Context, rawURL string) (archive.Storage, error) {
	if rawURL == "" {
		return nil, usagef("no archive given: pass --archive DIR or set WALSHIP_ARCHIVE")
	}
	u, err := archive.ParseURL(rawURL)
	if err != nil {
		return nil, usageError{err}
	}
	switch u.Scheme {
	case "file":
		return local.New(u.Path)
	default:
		return nil, usagef("archive %s: %s archives are not supported by this walship yet; use a directory", rawURL, u.Scheme)
	}
}
