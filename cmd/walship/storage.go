package main

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/walship/walship/internal/cli"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/crypt"
	"github.com/walship/walship/archive/local"
	"github.com/walship/walship/archive/s3"
	"github.com/walship/walship/archive/sftp"
)

// archiveFlag is the --archive flag that every command touching the archive
// takes.
func archiveFlag() cli.Flag {
	return &cli.StringFlag{Name: "archive", Aliases: []string{"a"}, EnvVars: []string{"WALSHIP_ARCHIVE"},
		Usage: "the archive: a directory (/srv/walship/main, also on NFS), sftp://[user@]host[:port]/path, or s3://bucket/prefix"}
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
		&cli.StringFlag{Name: "s3-endpoint", EnvVars: []string{"WALSHIP_S3_ENDPOINT"},
			Usage: "base `URL` of an S3-compatible server for s3:// archives (https://minio.example:9000, http://127.0.0.1:7070); " +
				"default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's endpoint_url, else AWS"},
		&cli.StringFlag{Name: "s3-region", EnvVars: []string{"WALSHIP_S3_REGION"},
			Usage: "region of the s3:// bucket; default: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else " + s3.DefaultRegion},
		&cli.BoolFlag{Name: "s3-path-style", EnvVars: []string{"WALSHIP_S3_PATH_STYLE"},
			Usage: "address the bucket in the URL path (endpoint/bucket/key), as most self-hosted S3 servers need, " +
				"instead of the host name (bucket.endpoint)"},
		&cli.StringFlag{Name: "s3-profile", EnvVars: []string{"WALSHIP_S3_PROFILE"},
			Usage: "profile of ~/.aws/credentials and ~/.aws/config for s3:// archives; default: AWS_PROFILE, else default"},
		&cli.StringFlag{Name: "s3-credentials-file", EnvVars: []string{"WALSHIP_S3_CREDENTIALS_FILE"}, TakesFile: true,
			Usage: "shared credentials `FILE` to read instead of ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE)"},
		&cli.StringFlag{Name: "encryption-identity", EnvVars: []string{"WALSHIP_ENCRYPTION_IDENTITY"}, TakesFile: true,
			Usage: "age identity `FILE` (private keys, mode 0600) that decrypts an encrypted archive: wait, fetch, restore, verify and " +
				"encryption rewrap need it, and info, expire and backup --incremental once they read what is encrypted; " +
				"push, tail and backup do not (they encrypt with the archive's public keys)"},
		&cli.BoolFlag{Name: "require-encryption", EnvVars: []string{"WALSHIP_REQUIRE_ENCRYPTION"},
			Usage: "refuse an archive that has no encryption keys, rather than write or read it in the clear " +
				"(so that a removed encryption/ directory cannot turn encryption off)"},
		&cli.StringFlag{Name: "s3-ca-bundle", EnvVars: []string{"WALSHIP_S3_CA_BUNDLE"}, TakesFile: true,
			Usage: "PEM `FILE` of the certificate authorities trusted for an https S3 endpoint, instead of the system's store; " +
				"default: AWS_CA_BUNDLE, else the profile's ca_bundle. Naming only your endpoint's CA also saves each call " +
				"loading the whole store (8 ms with Debian's)"},
		&cli.StringFlag{Name: "s3-tls-sessions", EnvVars: []string{"WALSHIP_S3_TLS_SESSIONS"}, TakesFile: true,
			Usage: "`DIR` (0700) where an https S3 archive's TLS sessions are kept, so that the next call resumes one " +
				"instead of a whole handshake (1-2 ms: no certificate sent and checked); default: walship/tls-sessions " +
				"under $XDG_CACHE_HOME or ~/.cache; off keeps none"},
		&cli.DurationFlag{Name: "s3-timeout", Value: s3.DefaultTimeout, EnvVars: []string{"WALSHIP_S3_TIMEOUT"},
			Usage: "give up an S3 request whose server does not answer, or stops sending, for this long; the call is then retried"},
	}
}

// s3Options are the settings of the s3-* flags of sshFlags.
type s3Options struct {
	Endpoint        string
	Region          string
	PathStyle       bool
	Profile         string
	CredentialsFile string
	Timeout         time.Duration
	TLSSessions     string // --s3-tls-sessions: a directory, "off", or "" for the default
	CABundle        string
}

// s3OptionsFrom reads the s3-* flags.
func s3OptionsFrom(c *cli.Context) s3Options {
	return s3Options{
		Endpoint:        c.String("s3-endpoint"),
		Region:          c.String("s3-region"),
		PathStyle:       c.Bool("s3-path-style"),
		Profile:         c.String("s3-profile"),
		CredentialsFile: c.String("s3-credentials-file"),
		Timeout:         c.Duration("s3-timeout"),
		TLSSessions:     c.String("s3-tls-sessions"),
		CABundle:        c.String("s3-ca-bundle"),
	}
}

// s3Args returns the command line flags that give another walship
// process (the prefetcher, a restore_command) the same S3 settings.
func s3Args(o sshOptions) []string {
	var args []string
	for _, kv := range [][2]string{{"--s3-endpoint", o.S3.Endpoint}, {"--s3-region", o.S3.Region},
		{"--s3-profile", o.S3.Profile}, {"--s3-credentials-file", o.S3.CredentialsFile}, {"--s3-tls-sessions", o.S3.TLSSessions},
		{"--s3-ca-bundle", o.S3.CABundle}} {
		if kv[1] != "" {
			args = append(args, kv[0], kv[1])
		}
	}
	if o.S3.PathStyle {
		args = append(args, "--s3-path-style")
	}
	if o.S3.Timeout != 0 && o.S3.Timeout != s3.DefaultTimeout {
		args = append(args, "--s3-timeout", o.S3.Timeout.String())
	}
	return args
}

// sshOptions are the settings of sshFlags.
type sshOptions struct {
	FileMode           string // --file-mode; "" for archive.DefaultFileMode
	Identities         []string
	KnownHosts         string
	HostKeyPolicy      string
	HostKeyFingerprint string
	Timeout            time.Duration
	S3                 s3Options
	Encryption         cryptOptions
	// NoRetry leaves out archive.Retry, for maintenance that does its own
	// (encryption rewrap, whose Replace a retry would hide).
	NoRetry bool
	Logger  *slog.Logger // receives connection events and retries
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
		S3:                 s3OptionsFrom(c),
		Encryption:         cryptOptions{Identity: c.String("encryption-identity"), Require: c.Bool("require-encryption")},
		Logger:             logger,
	}
}

// openArchive opens the archive that rawURL names. For an sftp:// archive,
// ssh (at most one) gives the settings of sshFlags; without it the defaults
// apply. An sftp:// archive connects on first use and reconnects when its
// connection breaks; calls that fail for a broken connection are retried a
// few times with backoff (archive.Retry).
func openArchive(ctx context.Context, rawURL string, ssh ...sshOptions) (archive.Storage, error) {
	var o sshOptions
	if len(ssh) > 0 {
		o = ssh[0]
	}
	st, err := openBackend(ctx, rawURL, o)
	if err != nil {
		return nil, err
	}
	return withEncryption(st, o)
}

// cryptOptions are the settings of --encryption-identity and
// --require-encryption.
type cryptOptions struct {
	Identity string
	Require  bool
}

// cryptArgs returns the command line flags that give another walship
// process (the prefetcher, a restore_command) the same encryption settings.
func cryptArgs(o sshOptions) []string {
	var args []string
	if o.Encryption.Identity != "" {
		args = append(args, "--encryption-identity", o.Encryption.Identity)
	}
	if o.Encryption.Require {
		args = append(args, "--require-encryption")
	}
	return args
}

// withEncryption puts the encryption layer on the archive of one cluster:
// every command goes through it, so that an archive with encryption keys
// is never written in the clear, whoever writes. An archive without keys
// passes through as it is (unless an identity or --require-encryption
// says it must have them).
func withEncryption(st archive.Storage, o sshOptions) (archive.Storage, error) {
	cfg := crypt.Config{Require: o.Encryption.Require, Logger: o.Logger}
	if o.Encryption.Identity != "" {
		ids, err := crypt.LoadIdentities(o.Encryption.Identity)
		if err != nil {
			st.Close()
			return nil, usagef("--encryption-identity: %v", err)
		}
		cfg.Identities = ids
	}
	return crypt.New(st, cfg), nil
}

// openRepo opens the root of a repository of many clusters, which is not
// one cluster's archive: each cluster gets its encryption layer of its own
// (withEncryption on archive.Sub).
func openRepo(ctx context.Context, rawURL string, o sshOptions) (archive.Storage, error) {
	return openBackend(ctx, rawURL, o)
}

// openBackend opens the storage that rawURL names, without encryption.
func openBackend(ctx context.Context, rawURL string, o sshOptions) (archive.Storage, error) {
	if rawURL == "" {
		return nil, usagef("no archive given: pass --archive DIR or set WALSHIP_ARCHIVE")
	}
	u, err := archive.ParseURL(rawURL)
	if err != nil {
		return nil, usageError{err}
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
	case "s3":
		return openS3(u, o)
	default:
		return nil, usagef("archive %s: %s archives are not supported; use a directory, sftp:// or s3://", rawURL, u.Scheme)
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
			return withEncryption(archive.Lazy(u.Path, func(context.Context) (archive.Storage, error) {
				return local.Open(local.Config{Root: u.Path, FileMode: mode})
			}), ssh)
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
	if o.NoRetry {
		return st, nil
	}
	return archive.Retry(st, archive.RetryPolicy{Logger: o.Logger}), nil
}

// openS3 opens an s3:// archive. It sends no request: the first call
// does, and every call that cannot reach the server is retried a few
// times with backoff (archive.Retry).
func openS3(u archive.URL, o sshOptions) (archive.Storage, error) {
	if o.S3.Timeout < 0 {
		return nil, usagef("--s3-timeout %v: use a positive duration", o.S3.Timeout)
	}
	st, err := s3.New(s3.Config{
		Bucket:          u.Host,
		Prefix:          u.Path,
		Endpoint:        o.S3.Endpoint,
		Region:          o.S3.Region,
		PathStyle:       o.S3.PathStyle,
		Profile:         o.S3.Profile,
		CredentialsFile: o.S3.CredentialsFile,
		Timeout:         o.S3.Timeout,
		TLSSessionDir:   tlsSessionDir(o.S3.TLSSessions),
		CABundle:        o.S3.CABundle,
		Logger:          o.Logger,
	})
	if err != nil {
		return nil, usageError{err}
	}
	if o.NoRetry {
		return st, nil
	}
	return archive.Retry(st, archive.RetryPolicy{Logger: o.Logger}), nil
}

// tlsSessionDir is where --s3-tls-sessions keeps TLS sessions: "" (keep
// none) for off, or when the user has no cache directory (no HOME, as a
// server's environment may have).
func tlsSessionDir(flag string) string {
	switch flag {
	case "off":
		return ""
	case "":
		dir, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		return filepath.Join(dir, "walship", "tls-sessions")
	}
	return flag
}
