package backup

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// incrementalFile builds an INCREMENTAL file as the server sends it.
func incrementalFile(truncation uint32, blocks ...uint32) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, []uint32{incrementalMagic, uint32(len(blocks)), truncation})
	binary.Write(&b, binary.LittleEndian, blocks)
	if len(blocks) > 0 {
		b.Write(make([]byte, blockSize-b.Len()%blockSize))
	}
	for _, n := range blocks {
		b.Write(bytes.Repeat([]byte{byte(n)}, blockSize))
	}
	return b.Bytes()
}

func TestReadIncrementalHeader(t *testing.T) {
	for _, tc := range []struct {
		name       string
		file       []byte
		length     uint32
		nblocks    int
		wantErrStr string
	}{
		{"no blocks", incrementalFile(3), 3, 0, ""},
		{"blocks past the truncation length", incrementalFile(2, 0, 5), 6, 2, ""},
		{"bad magic", append([]byte{1, 2, 3, 4}, incrementalFile(1)[4:]...), 0, 0, "magic"},
		{"too many blocks", func() []byte { b := incrementalFile(0); binary.LittleEndian.PutUint32(b[4:], relSegBlocks+1); return b }(), 0, 0, "more than a segment"},
		{"short", incrementalFile(1, 1)[:10], 0, 0, "header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bytes.NewReader(tc.file)
			h, err := readIncrementalHeader(r)
			if tc.wantErrStr != "" {
				if err == nil || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.wantErrStr) {
					t.Fatalf("err %v, want ErrCorrupt saying %q", err, tc.wantErrStr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.length() != tc.length || len(h.blocks) != tc.nblocks {
				t.Errorf("length %d, %d blocks; want %d, %d", h.length(), len(h.blocks), tc.length, tc.nblocks)
			}
			if rest := r.Len(); rest != tc.nblocks*blockSize {
				t.Errorf("%d bytes left after the header, want the %d blocks", rest, tc.nblocks)
			}
		})
	}
}

func TestReconstructedPath(t *testing.T) {
	for in, want := range map[string]string{
		"base/5/INCREMENTAL.16384":      "base/5/16384",
		"pg_tblspc/1/x/INCREMENTAL.7_1": "pg_tblspc/1/x/7_1",
		"base/5/16384":                  "base/5/16384",
		"INCREMENTAL.":                  "INCREMENTAL.",
	} {
		if got, _ := reconstructedPath(in); got != want {
			t.Errorf("reconstructedPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestChainAndExpire(t *testing.T) {
	mk := func(id, parent string) Meta { return Meta{ID: id, Parent: parent, SystemID: 1, PGVersion: 170000} }
	all := []Meta{mk("a", ""), mk("b", "a"), mk("c", "b"), mk("d", ""), mk("e", "d"), mk("f", "b")}
	chain, err := resolveChain(all, all[5])
	if err != nil || chainIDs(chain) != "a <- b <- f" {
		t.Errorf("chain of f: %q, %v; want a <- b <- f", chainIDs(chain), err)
	}
	if _, err := resolveChain(all[1:], all[2]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("chain without its full backup: %v, want ErrCorrupt", err)
	}
	for keep, want := range map[int]string{1: "a b f", 2: "a b d e f", 3: "a b d e f", 6: "a b c d e f"} {
		kept, gone := keepWithParents(all, keep)
		var ids []string
		for _, m := range kept {
			ids = append(ids, m.ID)
		}
		if got := strings.Join(ids, " "); got != want || len(kept)+len(gone) != len(all) {
			t.Errorf("keep %d: kept %q, want %q", keep, got, want)
		}
	}
}
