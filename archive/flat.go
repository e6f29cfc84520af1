package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/walship/walship/wal"
)

// A pg_standby archive is a flat directory of WAL files that
// "cp %p /archive/%f" wrote: no walship.json, no wal/. walship reads it as
// it is (StatWAL and OpenWAL look at the root last), and the first walship
// push into it starts walship's layout beside the old files, which stay
// readable until cleanup removes them. Readers verify those raw files record
// by record, as any raw file without a checksum file.

// ReadIdentityOrFlat returns the archive's identity from walship.json or,
// for a pg_standby archive without one, from the page header of the first
// segment at its root. It returns ErrNoIdentity when there is neither.
func ReadIdentityOrFlat(ctx context.Context, st Storage) (Identity, error) {
	id, err := ReadIdentity(ctx, st)
	if !errors.Is(err, ErrNoIdentity) {
		return id, err
	}
	fis, err := st.List(ctx, "")
	if err != nil {
		return Identity{}, err
	}
	for _, fi := range fis {
		n, err := wal.ParseName(fi.Name)
		if err != nil || n.Kind != wal.Segment {
			continue
		}
		h, err := readFlatHeader(ctx, st, fi.Name)
		if err != nil {
			return Identity{}, fmt.Errorf("pg_standby archive %s: the identity of its first segment %s: %w", st, fi.Name, err)
		}
		return IdentityFromHeader(h, time.Time{}), nil
	}
	return Identity{}, ErrNoIdentity
}

func readFlatHeader(ctx context.Context, st Storage, name string) (wal.LongHeader, error) {
	rc, err := st.Open(ctx, FlatPath(name))
	if err != nil {
		return wal.LongHeader{}, err
	}
	defer rc.Close()
	b := make([]byte, wal.LongHeaderSize)
	if _, err := io.ReadFull(rc, b); err != nil {
		return wal.LongHeader{}, err
	}
	return wal.ParseLongHeader(b)
}

// ListWAL lists the archived WAL files: those under wal/ and then those at
// the root of a pg_standby archive that wal/ does not hold, by name as
// stored (with the suffix of its compression), checksum files left out. Flat
// reports which came from the root.
func ListWAL(ctx context.Context, st Storage) (files []FileInfo, flat map[string]bool, err error) {
	under, err := st.List(ctx, WALDir)
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	for _, fi := range under {
		if strings.HasSuffix(fi.Name, ChecksumSuffix) {
			continue
		}
		files = append(files, fi)
		seen[TrimCompression(fi.Name)] = true
	}
	root, err := st.List(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	flat = map[string]bool{}
	for _, fi := range root {
		if _, err := wal.ParseName(fi.Name); err != nil || seen[fi.Name] {
			continue
		}
		files = append(files, fi)
		flat[fi.Name] = true
	}
	return files, flat, nil
}
