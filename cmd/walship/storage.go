package main

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/local"
	"github.com/walship/walship/archive/sftp"
)

// archiveFlag is the --archive flag that every command touching the archive
// takes.
func archiveFlag() cli.Flag {
	return &cli.StringFlag{Name: "archive", Aliases: []string{"a"}, EnvVars: []string{"WALSHIP_ARCHIVE"},
		Usage: "the archive: a directory (/srv/walship/main, also on NFS), or sftp://[user@]host[:port]/path"}
}

// sshFlags are the flags that say how to reach an sftp:// archive, and
// --file-mode, which says how to write into any archive; every command that
// takes archiveFlag takes them too, so that one config file key sets them
// for all.
func sshFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "file-mode", Value: "0640", EnvVars: []string{"WALSHIP_FILE_MODE"},
			Usage: "permission bits (octal) of the files walship writes into the archive, whatever the umask: 0600, 0640 or 0644; " +
				"the directories it creates get the same plus x where r is set (0640: 0750)",
			Action: func(_ *cli.Context, v string) error {
				if _, err := archive.ParseFileMode(v); err != nil {
					return usagef("--file-mode: %v", err)
				}
				return nil
			}},
		&cli.StringSliceFlag{Name: "identity", EnvVars: []string{"WALSHIP_SSH_IDENTITY"},
			Usage: "private key `FILE` to log in to an sftp:// archive with; repeatable (default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa; " +
				"keys of ssh-agent at SSH_AUTH_SOCK are tried too)"},
		&cli.StringFlag{Name: "known-hosts", EnvVars: []string{"WALSHIP_SSH_KNOWN_HOSTS"},
			Usage: "known_hosts `FILE` holding the sftp:// server's host key (default: " + sftp.DefaultKnownHostsFile + ")"},
		&cli.StringFlag{Name: "host-key-policy", Value: sftp.Strict.String(), EnvVars: []string{"WALSHIP_SSH_HOST_KEY_POLICY"},
			Usage: "strict: refuse a server that known_hosts does not list; accept-new: add its key on first contact. " +
				"A changed host key is refused either way"},
		&cli.StringFlag{Name: "host-key-fingerprint", EnvVars: []string{"WALSHIP_SSH_HOST_KEY_FINGERPRINT"},
			Usage: "accept only the host key with this fingerprint (`SHA256:…`, as ssh-keygen -lf prints it) instead of known_hosts"},
		&cli.DurationFlag{Name: "ssh-timeout", Value: sftp.DefaultIOTimeout, EnvVars: []string{"WALSHIP_SSH_TIMEOUT"},
			Usage: "give up connecting to the sftp:// server, or waiting for its answer, after this long; the call is then retried"},
	}
}

// sshOptions are the settings of sshFlags.
type sshOptions struct {
	FileMode           string // --file-mode; "" for archive.DefaultFileMode
	Identities         []string
	KnownHosts         string
	HostKeyPolicy      string
	HostKeyFingerprint string
	Timeout            time.Duration
	Logger             *slog.Logger // receives connection events and retries
}

// sshOptionsFrom reads sshFlags.
func sshOptionsFrom(c *cli.Context, logger *slog.Logger) sshOptions {
	return sshOptions{
		FileMode:           c.String("file-mode"),
		Identities:         c.StringSlice("identity"),
		KnownHosts:         c.String("known-hosts"),
		HostKeyPolicy:      c.String("host-key-policy"),
		HostKeyFingerprint: c.String("host-key-fingerprint"),
		Timeout:            c.Duration("ssh-timeout"),
		Logger:             logger,
	}
}

// openArchive opens the archive that rawURL names. For an sftp:// archive,
// ssh (at most one) gives the settings of sshFlags; without it the defaults
// apply. An sftp:// archive connects on first use and reconnects when its
// connection breaks; calls that fail for a broken connection are retried a
// few times with backoff (archive.Retry).
func openArchive(ctx context.Context, rawURL string, ssh ...sshOptions) (archive.Storage, error) {
	if rawURL == "" {
		return nil, usagef("no archive given: pass --archive DIR or set WALSHIP_ARCHIVE")
	}
	u, err := archive.ParseURL(rawURL)
	if err != nil {
		return nil, usageError{err}
	}
	var o sshOptions
	if len(ssh) > 0 {
		o = ssh[0]
	}
	mode, err := fileMode(o)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "file":
		return local.Open(local.Config{Root: u.Path, FileMode: mode})
	case "sftp":
		return openSFTP(u, o, mode)
	default:
		return nil, usagef("archive %s: %s archives are not supported; use a directory or sftp://", rawURL, u.Scheme)
	}
}

// openArchiveToRead opens the archive of a restore command (wait, fetch).
// A directory that cannot be opened now, because it does not exist (an NFS
// share not mounted, a subdirectory of one) or cannot be read, is an
// archive to retry, as an unreachable SFTP host is: opening is tried again
// on each use, and every failure is an error that is never "not found".
func openArchiveToRead(ctx context.Context, rawURL string, ssh sshOptions) (archive.Storage, error) {
	if rawURL != "" {
		if u, err := archive.ParseURL(rawURL); err == nil && u.Scheme == "file" {
			mode, err := fileMode(ssh)
			if err != nil {
				return nil, err
			}
			return archive.Lazy(u.Path, func(context.Context) (archive.Storage, error) {
				return local.Open(local.Config{Root: u.Path, FileMode: mode})
			}), nil
		}
	}
	return openArchive(ctx, rawURL, ssh)
}

// fileMode parses --file-mode; "" is the default.
func fileMode(o sshOptions) (fs.FileMode, error) {
	if o.FileMode == "" {
		return archive.DefaultFileMode, nil
	}
	m, err := archive.ParseFileMode(o.FileMode)
	if err != nil {
		return 0, usagef("--file-mode: %v", err)
	}
	return m, nil
}

func openSFTP(u archive.URL, o sshOptions, mode fs.FileMode) (archive.Storage, error) {
	policy, err := sftp.ParseHostKeyPolicy(o.HostKeyPolicy)
	if err != nil {
		return nil, usageError{err}
	}
	if o.Timeout < 0 {
		return nil, usagef("--ssh-timeout %v: use a positive duration", o.Timeout)
	}
	st, err := sftp.New(sftp.Config{
		Host:               u.Host,
		Port:               u.Port,
		User:               u.User,
		Path:               u.Path,
		IdentityFiles:      o.Identities,
		AgentSocket:        os.Getenv("SSH_AUTH_SOCK"),
		KnownHostsFile:     o.KnownHosts,
		HostKeyPolicy:      policy,
		HostKeyFingerprint: o.HostKeyFingerprint,
		FileMode:           mode,
		DialTimeout:        o.Timeout,
		IOTimeout:          o.Timeout,
		Logger:             o.Logger,
	})
	if err != nil {
		return nil, usageError{err}
	}
	return archive.Retry(st, archive.RetryPolicy{Logger: o.Logger}), nil
}
