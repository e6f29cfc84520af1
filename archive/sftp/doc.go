// Package sftp is the archive backend for a directory on an SSH server,
// reached over SFTP: sftp://user@host[:port]/path.
//
// # Connection
//
// A Storage keeps one SSH connection, made on first use (or by Dial) and
// reused by every call, so a process pays for one handshake. When the
// connection breaks, the call that noticed fails with an error matching
// archive.ErrUnavailable, and the next call dials again; retrying is the job
// of archive.Retry, not of this package. Connection errors never match
// fs.ErrNotExist, so an unreachable server never reads as a missing file.
// Every request to the server runs under Config.IOTimeout: a server that
// does not answer for that long is given up, its connection closed.
//
// # Security
//
// Authentication is by public key only: the identity files of Config and the
// keys of ssh-agent. The server's host key must be in the known_hosts file,
// or match a pinned fingerprint; there is no way to skip the check. With
// AcceptNew, the first key seen of a host known_hosts does not list is added
// to it (trust on first use); a changed key is refused in every mode.
//
// # Writes
//
// Put writes a hidden temporary file (".<name>.tmp.<random hex>") in the
// file's own directory, sets its mode (SETSTAT, before any data: the
// server's umask applied when it was created), flushes it with fsync@openssh.com when the server
// offers that extension (OpenSSH does), closes it, and gives it its final
// name with the plain SFTP rename. OpenSSH's sftp-server implements that
// rename with link(2) and unlink(2), so it fails instead of replacing a file
// that exists: two walship processes pushing the same segment can never
// overwrite each other. (posix-rename@openssh.com would replace it.) On file
// systems without hard links, sftp-server falls back to a stat(2) followed by
// rename(2), which narrows that guarantee to "no replacement unless two
// Puts of one name race".
//
// SFTP cannot flush a directory: a name given just before the server's
// operating system crashes may be lost on file systems that do not order
// metadata writes (ext4 and XFS do order them with their journal).
//
// Files get Config.FileMode (0640 by default) and the directories Put
// creates archive.DirMode of it (0750), whatever the umask of the server's
// sftp-server. A server that answers that it cannot set modes at all keeps
// its own, with a warning logged once; any other refusal fails the Put.
//
// A Put whose connection breaks leaves its temporary file behind, hidden;
// the same Storage removes it once it is connected again. A process that
// dies leaves it for good; ListTemp finds such files and RemoveTemp removes
// them (walship cleanup and expire remove the old ones).
//
// Watch is not supported: waiting callers poll.
package sftp
