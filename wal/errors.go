package wal

import "errors"

// Sentinel errors. Functions wrap them with the offending input, so callers
// test with errors.Is and print the error as is.
var (
	// ErrInvalidLSN means a string is not an LSN in PostgreSQL's "16/B374D848" form.
	ErrInvalidLSN = errors.New("invalid LSN")
	// ErrInvalidName means a string is not the name of a file PostgreSQL archives,
	// or a name does not fit the segment size it is used with.
	ErrInvalidName = errors.New("invalid WAL file name")
	// ErrNotWAL means bytes do not start with a WAL segment's long page header.
	ErrNotWAL = errors.New("not a WAL segment")
	// ErrForeignSystem means a segment was written by another database system
	// than the one expected: mixing clusters in one archive corrupts standbys.
	ErrForeignSystem = errors.New("WAL of another database system")
	// ErrSegmentSize means a segment's size differs from the expected one.
	ErrSegmentSize = errors.New("wrong WAL segment size")
	// ErrWrongSegment means a segment's page header does not match its file name.
	ErrWrongSegment = errors.New("WAL segment does not match its name")
	// ErrInvalidHistory means a timeline history file cannot be parsed.
	ErrInvalidHistory = errors.New("invalid timeline history")
	// ErrDamagedWAL means a segment is not intact WAL: PostgreSQL would stop
	// reading it early, taking the damage for the end of WAL.
	ErrDamagedWAL = errors.New("damaged WAL")
)
