package archive

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// DefaultFileMode is the permission bits of the files walship stores: read
// and write for their owner (the user PostgreSQL runs as), read for its
// group, so that a backup operator or a monitoring user in that group can
// read the archive without being able to change it; nothing for others.
// PostgreSQL runs archive_command under its own umask (077 by default),
// which would leave every file 0600, so the backends set the mode
// explicitly instead of taking what the umask leaves.
const DefaultFileMode fs.FileMode = 0o640

// DirMode returns the permission bits of the directories walship creates
// for files of mode m: m's, plus search (x) wherever m allows reading, so
// that whoever may read the files may reach them. 0640 gives 0750.
func DirMode(m fs.FileMode) fs.FileMode {
	m = m.Perm()
	return m | (m&0o444)>>2
}

// CheckFileMode reports whether m may be the mode of archived files: the
// owner must be able to read and write them (walship reads what it wrote,
// and removes it), nobody else may write them (archived WAL is what a
// standby replays), and no execute or special bits.
func CheckFileMode(m fs.FileMode) error {
	switch {
	case m&^fs.ModePerm != 0 || m&0o111 != 0:
		return fmt.Errorf("file mode %04o: archived files take only read and write bits (such as 0600, 0640 or 0644)", uint32(m))
	case m&0o600 != 0o600:
		return fmt.Errorf("file mode %04o: the owner must be able to read and write archived files (such as 0600, 0640 or 0644)", uint32(m))
	case m&0o022 != 0:
		return fmt.Errorf("file mode %04o: group and others must not be able to write archived files (such as 0600, 0640 or 0644)", uint32(m))
	}
	return nil
}

// ParseFileMode parses an octal file mode as chmod(1) takes it ("0640",
// "640" or "0o640") and checks it with CheckFileMode.
func ParseFileMode(s string) (fs.FileMode, error) {
	digits := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	v, err := strconv.ParseUint(digits, 8, 32)
	if err != nil || digits == "" || len(digits) > 4 {
		return 0, fmt.Errorf("file mode %q: want an octal mode such as 0640", s)
	}
	if v > 0o777 {
		return 0, fmt.Errorf("file mode %s: archived files take only read and write bits (such as 0600, 0640 or 0644)", s)
	}
	m := fs.FileMode(v)
	if err := CheckFileMode(m); err != nil {
		return 0, err
	}
	return m, nil
}
