// Package backup takes base backups into the archive and restores them.
//
// A backup lives under backups/ in the archive:
//
//	backups/<id>.started        written first: reserves the id
//	backups/<id>/inprogress-<n>.json  while it runs: its start, renewed every minute (InProgress)
//	backups/<id>/base.tar.zst   the main data directory, a tar stream
//	backups/<id>/<oid>.tar.zst  one tar stream per tablespace
//	backups/<id>/backup_manifest.zst  PostgreSQL's manifest (per-file CRC32C)
//	backups/<id>.json           written last: the backup is complete (Meta)
//
// The id is the UTC start time, 20261122T011500Z. Only a backup with its
// <id>.json is complete: Backup writes it after every other file is durable
// and the WAL the backup needs is archived, so an interrupted backup is never
// restored from. The .json file sits beside the directory, not in it, because
// archive.Storage lists files only: one List of backups/ finds every
// complete backup, and every interrupted one: a .started file without its
// .json.
//
// A backup in progress needs its WAL from its start on before it is
// complete, and walship cleanup and expire must not remove it. So Backup
// stores an in-progress marker as soon as the server names the start
// position, and renews it every heartbeat: Put never replaces a file, so
// each renewal is a new marker, numbered one higher, and the older one is
// removed. ReadCensus judges every backup without <id>.json by its newest
// marker (running, starting, abandoned or interrupted: see PendingState),
// and Census.KeepWAL says which WAL must stay.
//
// An incremental backup (PostgreSQL 17, Options.Incremental) is stored the
// same way; its backup.json (format 2) names its Parent, and its tar
// streams hold INCREMENTAL.<name> files for the relation files that
// changed. Restore rebuilds a chain in one pass per backup, newest first
// (chain.go); Expire keeps every backup a kept one builds on.
//
// A backup holds no WAL: its WAL comes from the archive, where the primary's
// archive_command (walship push) puts it. Restore writes a restore_command
// (walship fetch, see waiter.Fetcher) that reads it back during recovery.
package backup
