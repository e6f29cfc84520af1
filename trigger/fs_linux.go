package trigger

import (
	"errors"

	"golang.org/x/sys/unix"
)

// errNoExchange says the file system cannot swap two names atomically.
var errNoExchange = errors.New("atomic exchange not supported")

// exchange swaps the files named a and b atomically; it fails with ENOENT
// when either is missing. Tests replace it to run the fallback.
var exchange = func(a, b string) error {
	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		return errNoExchange
	}
	return err
}

// Network and cluster file systems: inotify there reports only the changes
// made by this host, so a trigger written on another one goes unseen.
var networkFS = map[uint32]string{
	unix.NFS_SUPER_MAGIC:   "nfs",
	unix.SMB_SUPER_MAGIC:   "smb",
	0xfe534d42:             "smb2",
	unix.CIFS_SUPER_MAGIC:  "cifs",
	unix.FUSE_SUPER_MAGIC:  "fuse",
	unix.V9FS_MAGIC:        "9p",
	unix.CEPH_SUPER_MAGIC:  "ceph",
	unix.AFS_SUPER_MAGIC:   "afs",
	unix.CODA_SUPER_MAGIC:  "coda",
	unix.OCFS2_SUPER_MAGIC: "ocfs2",
	0x01161970:             "gfs2",
}

// remoteFS returns the name of the network file system dir is on, or "" when
// it is local or cannot be told.
func remoteFS(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return ""
	}
	return networkFS[uint32(st.Type)]
}
