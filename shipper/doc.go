// Package shipper moves WAL from a primary into the archive: Push ships one
// whole file, as PostgreSQL's archive_command.
package shipper
