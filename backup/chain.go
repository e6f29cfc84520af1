package backup

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// An incremental backup (PostgreSQL 17) stores a relation file that
// changed since its parent as INCREMENTAL.<name>: a header (the magic
// number, the count of blocks it holds, the truncation block length: how
// many blocks of the file must come from the backups before it; then the
// block numbers), zero-padded to a whole block when it holds any, then the
// blocks (basebackup_incremental.h). Any other file is stored whole.
//
// restoreChain rebuilds each file as pg_combinebackup's reconstruct.c
// does, but in one pass over each backup's tar streams from the archive,
// newest backup first, writing nothing but the data directory: the newest
// backup creates every file its manifest lists (an incremental one at its
// reconstructed length, with the blocks it holds in place) and notes the
// blocks still missing, below the truncation block length; each older
// backup then fills the missing blocks it holds, and the first one that
// holds the file whole ends the search for that file (blocks past its end
// stay zero). Every file of every backup read is checked against its own
// manifest (size and CRC32C) as it streams past, so each reconstructed
// file is made of verified blocks, at the length the final backup's
// manifest entry (its INCREMENTAL file) dictates; a block that no backup
// of the chain can supply is an error.

const (
	incrementalMagic  = 0xd3ae1f0d
	incrementalPrefix = "INCREMENTAL."
	blockSize         = 8192 // BLCKSZ, the only size the npm and Debian builds use
	relSegBlocks      = (1 << 30) / blockSize
)

// resolveChain returns the backups m is made of, newest (m) first, down to
// the full backup the chain starts from.
func resolveChain(all []Meta, m Meta) ([]Meta, error) {
	byID := make(map[string]Meta, len(all))
	for _, b := range all {
		byID[b.ID] = b
	}
	chain := []Meta{m}
	for cur := m; cur.Incremental(); {
		p, ok := byID[cur.Parent]
		if !ok {
			return nil, fmt.Errorf("%w: incremental backup %s builds on backup %s, which is not in the archive (or not complete): "+
				"restore an older backup, or a full one", ErrCorrupt, cur.ID, cur.Parent)
		}
		if p.SystemID != m.SystemID || p.PGVersion/10000 != m.PGVersion/10000 || len(chain) > len(all) {
			return nil, fmt.Errorf("%w: backup %s builds on %s, of another system, major or a loop", ErrCorrupt, cur.ID, p.ID)
		}
		chain = append(chain, p)
		cur = p
	}
	return chain, nil
}

// chainIDs lists a chain's ids, oldest first, for the log.
func chainIDs(chain []Meta) string {
	ids := make([]string, len(chain))
	for i, m := range chain {
		ids[len(chain)-1-i] = m.ID
	}
	return strings.Join(ids, " <- ")
}

// need is a reconstructed file whose blocks below the truncation block
// length an older backup must still supply.
type need struct {
	target string   // the file in the data directory
	blocks []uint64 // bitmap of the blocks missing
	left   int
	seen   bool // the backup of the current pass holds the file
}

func (n *need) has(b uint32) bool {
	return int(b/64) < len(n.blocks) && n.blocks[b/64]&(1<<(b%64)) != 0
}

func (n *need) clear(b uint32) {
	n.blocks[b/64] &^= 1 << (b % 64)
	n.left--
}

// incrementalHeader is what an INCREMENTAL file starts with.
type incrementalHeader struct {
	blocks     []uint32
	truncation uint32
}

// length is the reconstructed file's length in blocks.
func (h incrementalHeader) length() uint32 {
	n := h.truncation
	for _, b := range h.blocks {
		n = max(n, b+1)
	}
	return n
}

// readIncrementalHeader reads the header and its padding.
func readIncrementalHeader(r io.Reader) (incrementalHeader, error) {
	var h incrementalHeader
	var fixed [12]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return h, fmt.Errorf("%w: incremental file header: %w", ErrCorrupt, err)
	}
	magic := binary.LittleEndian.Uint32(fixed[0:])
	n := binary.LittleEndian.Uint32(fixed[4:])
	h.truncation = binary.LittleEndian.Uint32(fixed[8:])
	if magic != incrementalMagic {
		return h, fmt.Errorf("%w: incremental file magic %#x, want %#x", ErrCorrupt, magic, incrementalMagic)
	}
	if n > relSegBlocks || h.truncation > relSegBlocks {
		return h, fmt.Errorf("%w: incremental file of %d blocks, truncation length %d: more than a segment", ErrCorrupt, n, h.truncation)
	}
	raw := make([]byte, 4*n)
	if _, err := io.ReadFull(r, raw); err != nil {
		return h, fmt.Errorf("%w: incremental file block numbers: %w", ErrCorrupt, err)
	}
	h.blocks = make([]uint32, n)
	for i := range h.blocks {
		h.blocks[i] = binary.LittleEndian.Uint32(raw[4*i:])
		if h.blocks[i] >= relSegBlocks {
			return h, fmt.Errorf("%w: incremental file names block %d, past a segment", ErrCorrupt, h.blocks[i])
		}
	}
	if hl := 12 + 4*int64(n); n > 0 && hl%blockSize != 0 {
		if _, err := io.CopyN(io.Discard, r, blockSize-hl%blockSize); err != nil {
			return h, fmt.Errorf("%w: incremental file header padding: %w", ErrCorrupt, err)
		}
	}
	return h, nil
}

// reconstructedPath strips INCREMENTAL. from a path's last element; ok
// says whether it had it.
func reconstructedPath(p string) (string, bool) {
	dir, base := path.Split(p)
	if !strings.HasPrefix(base, incrementalPrefix) || len(base) == len(incrementalPrefix) {
		return p, false
	}
	return dir + strings.TrimPrefix(base, incrementalPrefix), true
}

// restoreChain restores chain (newest first, as resolveChain returns it)
// into dirs; man is the newest backup's manifest, x the extractor whose
// progress and owner Restore reports.
func restoreChain(ctx context.Context, st archive.Storage, chain []Meta, man *Manifest, dirs map[uint32]string, x *extractor) error {
	needs := map[string]*need{}
	block := make([]byte, blockSize)
	newest := chain[0]
	x.total = 0
	for _, m := range chain {
		x.total += m.Size
	}

	// The newest backup: every file it lists, each incremental one at its
	// full length with the blocks it holds.
	x.onFile = func(r io.Reader, target, mpath string, th *tar.Header) error {
		mode := perm(th.Mode)&0o640 | 0o600
		if mpath == "backup_label" {
			return writeBackupLabel(r, target, mode, newest, chain[1])
		}
		out, inc := reconstructedPath(mpath)
		if !inc {
			return writeFile(target, mode, io.Discard, r, x.buf)
		}
		target = filepath.Join(filepath.Dir(target), path.Base(out))
		br := bufio.NewReaderSize(r, 1<<20)
		h, err := readIncrementalHeader(br)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, mode)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Truncate(int64(h.length()) * blockSize); err != nil {
			return err
		}
		n := &need{target: target, blocks: make([]uint64, (h.truncation+63)/64), left: int(h.truncation)}
		for b := uint32(0); b < h.truncation; b++ {
			n.blocks[b/64] |= 1 << (b % 64)
		}
		for _, b := range h.blocks {
			if _, err := io.ReadFull(br, block); err != nil {
				return fmt.Errorf("%w: block %d: %w", ErrCorrupt, b, err)
			}
			if _, err := f.WriteAt(block, int64(b)*blockSize); err != nil {
				return err
			}
			if n.has(b) {
				n.clear(b)
			}
		}
		if _, err := io.Copy(io.Discard, br); err != nil {
			return err
		}
		if n.left > 0 {
			needs[out] = n
		}
		return f.Close()
	}
	if err := x.backup(ctx, st, newest, dirs); err != nil {
		return err
	}

	// The older backups, newest first: the blocks still missing.
	for i, m := range chain[1:] {
		if len(needs) == 0 {
			break
		}
		oman, err := readManifest(ctx, st, m)
		if err != nil {
			return err
		}
		for _, n := range needs {
			n.seen = false
		}
		full := i == len(chain)-2
		ox := &extractor{man: oman, seen: make(map[string]bool, len(oman.Files)), prog: x.prog, total: x.total,
			done: x.done, buf: x.buf, dry: true, phase: "restore"}
		ox.onFile = func(r io.Reader, _, mpath string, th *tar.Header) error {
			out, inc := reconstructedPath(mpath)
			n := needs[out]
			if n == nil {
				_, err := io.CopyBuffer(io.Discard, r, x.buf)
				return err
			}
			if inc && full {
				return fmt.Errorf("%w: full backup %s holds the incremental file %s", ErrCorrupt, m.ID, mpath)
			}
			n.seen = true
			f, err := os.OpenFile(n.target, os.O_WRONLY|syscall.O_NOFOLLOW, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			br := bufio.NewReaderSize(r, 1<<20)
			var blocks []uint32
			if inc {
				h, err := readIncrementalHeader(br)
				if err != nil {
					return err
				}
				blocks = h.blocks
			} else {
				// Whole: it supplies every missing block it has; the
				// search for this file ends here.
				for b := uint32(0); b < uint32(th.Size/blockSize); b++ {
					blocks = append(blocks, b)
				}
				delete(needs, out)
			}
			for _, b := range blocks {
				if _, err := io.ReadFull(br, block); err != nil {
					return fmt.Errorf("%w: block %d: %w", ErrCorrupt, b, err)
				}
				if n.has(b) {
					if _, err := f.WriteAt(block, int64(b)*blockSize); err != nil {
						return err
					}
					n.clear(b)
				}
			}
			if _, err := io.Copy(io.Discard, br); err != nil {
				return err
			}
			if n.left == 0 {
				delete(needs, out)
			}
			return f.Close()
		}
		if err := ox.backup(ctx, st, m, nil); err != nil {
			return err
		}
		x.done = ox.done
		var lacking []string
		for p, n := range needs {
			if !n.seen {
				lacking = append(lacking, p)
			}
		}
		if len(lacking) > 0 {
			sort.Strings(lacking)
			return fmt.Errorf("%w: backup %s lacks %s (and %d more files), whose blocks backup %s needs", ErrCorrupt,
				m.ID, lacking[0], len(lacking)-1, newest.ID)
		}
	}
	for p, n := range needs {
		if n.left > 0 && len(chain) > 0 {
			return fmt.Errorf("%w: no backup of the chain holds %d blocks of %s", ErrCorrupt, n.left, p)
		}
	}
	return nil
}

// writeBackupLabel writes the newest backup's backup_label without its
// INCREMENTAL FROM lines, as pg_combinebackup does: the server refuses to
// start from a label that has them ("this is an incremental backup, not a
// data directory"). The lines must name the parent's start.
func writeBackupLabel(r io.Reader, target string, mode os.FileMode, m, parent Meta) error {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return err
	}
	var out strings.Builder
	var fromLSN, fromTLI string
	for _, line := range strings.SplitAfter(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "INCREMENTAL FROM LSN: "):
			fromLSN = strings.TrimSpace(strings.TrimPrefix(line, "INCREMENTAL FROM LSN: "))
		case strings.HasPrefix(line, "INCREMENTAL FROM TLI: "):
			fromTLI = strings.TrimSpace(strings.TrimPrefix(line, "INCREMENTAL FROM TLI: "))
		default:
			out.WriteString(line)
		}
	}
	lsn, err := wal.ParseLSN(fromLSN)
	if err != nil || lsn != parent.StartLSN || fromTLI != strconv.FormatUint(uint64(parent.StartTimeline), 10) {
		return fmt.Errorf("%w: backup %s's backup_label says it builds on LSN %q timeline %q, but its parent %s started at %s on timeline %d",
			ErrCorrupt, m.ID, fromLSN, fromTLI, parent.ID, parent.StartLSN, parent.StartTimeline)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return err
	}
	_, err = f.WriteString(out.String())
	return errors.Join(err, f.Close())
}
