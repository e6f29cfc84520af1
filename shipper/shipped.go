package shipper

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"

	"github.com/walship/walship/wal"
)

// A segment shipped ahead (PushAhead) is called for again by PostgreSQL
// once the archiver reaches it. Comparing it with the archived copy then
// costs what a re-push costs, and on a remote archive that is a login:
// over SFTP most of a call's time, for a file the archive was just seen
// to hold. So the push that ships a segment ahead records that it did, on
// the segment itself, as an extended attribute (shippedAttr): the archive
// (as --archive names it), the cluster, the segment's name, size, inode,
// modification time and XXH64, written only once the archived copy is
// durable. PostgreSQL's call for the segment then answers at once when
// the file still is that file (ShippedAhead), without opening the archive.
//
// The attribute goes with the file: PostgreSQL removes or recycles the
// segment once it is archived, and a recycled segment has another name and
// another modification time. Where the file system keeps no user
// attributes, nothing is recorded and every call compares with the archive.
const shippedAttr = "user.walship.shipped"

// shippedMark is what shippedAttr holds.
type shippedMark struct {
	sysid uint64
	name  string
	size  int64
	ino   uint64
	mtime int64 // ns
	sum   uint64
	arch  string
}

func (m shippedMark) String() string {
	return fmt.Sprintf("walship-shipped 1 %d %s %d %d %d %016x %s",
		m.sysid, m.name, m.size, m.ino, m.mtime, m.sum, strconv.Quote(m.arch))
}

// parseShippedMark parses what shippedAttr holds.
func parseShippedMark(s string) (shippedMark, bool) {
	f := strings.SplitN(s, " ", 9)
	if len(f) != 9 || f[0] != "walship-shipped" || f[1] != "1" {
		return shippedMark{}, false
	}
	var m shippedMark
	var errs [6]error
	m.sysid, errs[0] = strconv.ParseUint(f[2], 10, 64)
	m.name = f[3]
	m.size, errs[1] = strconv.ParseInt(f[4], 10, 64)
	m.ino, errs[2] = strconv.ParseUint(f[5], 10, 64)
	m.mtime, errs[3] = strconv.ParseInt(f[6], 10, 64)
	m.sum, errs[4] = strconv.ParseUint(f[7], 16, 64)
	m.arch, errs[5] = strconv.Unquote(f[8])
	if errors.Join(errs[:]...) != nil {
		return shippedMark{}, false
	}
	return m, true
}

// fileMark returns the mark of f, as fi describes it, for the rest.
func fileMark(fi os.FileInfo, sysid uint64, name, arch string, sum uint64) (shippedMark, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return shippedMark{}, false
	}
	return shippedMark{sysid: sysid, name: name, size: fi.Size(), ino: st.Ino, mtime: fi.ModTime().UnixNano(), sum: sum, arch: arch}, true
}

// markShipped records on f, which was just archived durably as name with
// content checksum sum, that it was; see shippedAttr. A file system that
// keeps no user attributes records nothing, which only costs the later
// call its comparison.
func (p *Pusher) markShipped(f *os.File, name string, sum uint64) {
	if p.ArchiveID == "" || p.SystemID == 0 {
		return
	}
	fi, err := f.Stat()
	if err != nil {
		return
	}
	m, ok := fileMark(fi, p.SystemID, name, p.ArchiveID, sum)
	if !ok {
		return
	}
	if err := unix.Fsetxattr(int(f.Fd()), shippedAttr, []byte(m.String()), 0); err != nil {
		p.logger().Debug("cannot record a segment shipped ahead on it; its own call will compare it with the archive", "file", name, "err", err)
	}
}

// ShippedAhead reports whether the segment at path, named name, was shipped
// ahead into the archive arch for the cluster sysid by an earlier push and
// is still the file it shipped: the record markShipped left on it matches
// its name, size, inode and modification time, and its content matches the
// XXH64 recorded. Anything else (no record, another archive, a file changed
// since, an error) is false, and the push goes on as any push does.
func ShippedAhead(path, name, arch string, sysid uint64) bool {
	n, err := wal.ParseName(name)
	if err != nil || n.Kind != wal.Segment || arch == "" {
		return false
	}
	f, err := openRegular(path)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, 512)
	sz, err := unix.Fgetxattr(int(f.Fd()), shippedAttr, buf)
	if err != nil {
		return false
	}
	m, ok := parseShippedMark(string(buf[:sz]))
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	now, ok := fileMark(fi, sysid, name, arch, m.sum)
	if !ok || now != m {
		return false
	}
	h := xxhash.New()
	if got, err := io.Copy(h, f); err != nil || got != m.size || h.Sum64() != m.sum {
		return false
	}
	return true
}
