// Package waiter feeds a standby from the archive: Wait is the waiting
// restore_command of a pg_standby-mode standby, which blocks until the
// segment PostgreSQL asks for is archived or a trigger ends recovery; Restore
// verifies and copies one archived file; Cleanup removes segments a standby
// no longer needs.
//
// The rule that shapes this package: in pg_standby mode "not found" ends
// recovery and promotes the standby, so Wait returns ErrNotFound only when
// the file is truly absent and a trigger says to stop waiting (or the file is
// not a segment). An archive it cannot read is retried, not reported absent;
// a corrupt or foreign file is ErrBadWAL, which must stop recovery.
package waiter
