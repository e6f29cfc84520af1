// Package pgtest starts real PostgreSQL clusters for end-to-end tests.
//
// Every cluster lives in its own temporary directory, listens on a free
// loopback port and on a Unix socket in a directory of its own, and is stopped
// and removed when the test ends. Nothing is mocked: tests run the
// PostgreSQL binaries found by [BinDir], so a missing PostgreSQL installation
// fails the test instead of skipping it.
//
// PostgreSQL refuses to run as root. When the test process is root, as it is in
// CI, every PostgreSQL program runs as an unprivileged user instead
// ($WALSHIP_PG_USER, else "postgres", else "nobody"), and every directory this
// package creates belongs to that user. [Chown] hands over files a test writes
// itself, and [TempDir] makes directories that user can write, for archives
// and trigger files.
//
// Only initdb, pg_ctl and postgres are needed: the harness talks to servers
// with pgx and copies clusters (BaseBackup) with walship's own BASE_BACKUP
// client, so it runs on server-only installations of any major walship
// supports, such as the ones .ci/pg-majors fetches. [Major] tells a test
// which major it runs on.
//
// The environment variables read are WALSHIP_PG_BINDIR (the directory holding
// initdb, pg_ctl and postgres) and WALSHIP_PG_USER (the user to run as when
// root).
package pgtest
