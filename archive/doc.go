// Package archive holds what every part of walship shares about a WAL
// archive: the Storage interface that backends implement, the layout of
// files under the archive root, the archive's identity (walship.json), the
// compression of stored files, and the parsing of archive URLs.
//
// The layout:
//
//	<root>/walship.json          identity: system identifier, PG version, segment size
//	<root>/wal/<name>[.zst]      whole WAL segments, .history, .backup and .partial files
//	<root>/wal/<segment>.tail/   record-level increments of a segment not yet archived whole
//	<root>/backups/<id>/         base backups
//
// Every directory may also hold hidden temporary files (TempName) of Puts
// in progress, or of Puts whose process was killed; backends that are
// TempFiles list and remove them. Files get DefaultFileMode (0640) and the
// directories Puts create DirMode of it (0750), whatever the umask, in the
// backends that are a Moder.
package archive
