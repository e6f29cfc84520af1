// Package wal knows the few facts about PostgreSQL's write-ahead log that an
// archive needs: file names, log sequence numbers, segment arithmetic,
// timeline history and backup history files, the long page header that
// opens every segment, and, in SegmentVerifier, the page and record headers
// and CRCs of a whole segment.
//
// What it checks is enough to refuse the mistakes that lose a standby: a
// segment of another database system, a segment stored under the wrong
// name, a file that is not WAL at all, and a segment damaged in a way the
// server would read as the end of WAL. It does not decode what records mean.
//
// The rules follow PostgreSQL's xlog_internal.h and timeline.c; where this
// package is stricter than PostgreSQL (upper-case names only, LSN parts of at
// most eight digits) it is because walship decides what enters an archive and
// PostgreSQL never writes the other forms.
//
// Segment arithmetic takes the segment size as an argument, because a cluster
// chooses it at initdb time (--wal-segsize). Functions that take a segment
// size panic when it is not valid (see ValidSegmentSize): the size comes from
// the archive's identity or a parsed page header, both validated once, so an
// invalid size here is a programming error.
package wal
