// Package e2e holds walship's end-to-end tests: real PostgreSQL clusters
// (started by internal/pgtest) calling the walship binary as their
// archive_command and restore_command, as in production.
package e2e
