// Package trigger holds the trigger file that ends recovery of a
// pg_standby-mode standby: its format, writing it, and watching for it.
//
// A standby started with recovery.signal runs walship wait as its
// restore_command, which blocks until the segment PostgreSQL asks for is
// archived. The standby promotes when that command answers "not found", so an
// operator ends recovery by writing the trigger file the command watches, as
// with pg_standby:
//
//   - empty, or "smart": a smart failover. Every segment already archived is
//     still restored; the first one missing is answered "not found", and
//     recovery ends with no archived WAL lost.
//   - "fast": a fast failover. The waiting command answers "not found" at
//     once; archived segments not yet restored are not applied. The file is
//     then rewritten to "smart" ([Consume]), so that a file the server asks
//     for again is still served instead of upsetting the server.
//
// Case and surrounding ASCII white space do not matter. Any other content is
// [ErrUnknownContent]: pg_standby warned and ignored such a file, and so
// should callers, rather than promote on a file that may not be a trigger.
//
// A SIGUSR1 sent to the waiting command also asks for a fast failover, as it
// did for pg_standby; PostgreSQL itself never sends it. A Go program ignores
// SIGUSR1 unless it asks for it, so one arriving before a [Watcher] starts
// or after it stops does no harm.
//
// The trigger file must be removed when recovery ends, by
//
//	recovery_end_command = 'rm -f /var/lib/postgresql/walship.trigger'
//
// since a trigger left behind promotes the next standby started with it.
package trigger
