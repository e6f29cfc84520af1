// Package waiter restores archived WAL for recovery. Wait is the waiting
// restore_command of a pg_standby-mode standby, which blocks until the
// segment PostgreSQL asks for is archived or a trigger ends recovery; Fetch
// (a Fetcher) is the non-waiting restore_command for point-in-time recovery
// and standby.signal standbys, with a Spool of prefetched segments; Restore
// verifies and copies one archived file; Cleanup removes segments a standby
// no longer needs.
//
// The rule that shapes this package: in pg_standby mode "not found" ends
// recovery and promotes the standby, so Wait returns ErrNotFound only when
// the file is truly absent and a trigger says to stop waiting (or the file is
// not a segment). Fetch answers at once, but likewise never reports an
// archive it cannot read (or that looks unmounted) as ErrNotFound: it retries,
// then gives ErrUnavailable. A corrupt or foreign file is ErrBadWAL, which
// must stop recovery.
package waiter
