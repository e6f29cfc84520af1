package wal

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// Segments written by PostgreSQL 13, 17 and 18 (wal/testdata/pgN-*.zst; see
// its README) verify, and a flipped byte in a record does not. The verifier
// follows the record format every major since 9.5 shares; these keep it
// honest about the majors the other testdata do not come from.
func TestVerifyOtherMajors(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "pg*-*.zst"))
	if err != nil || len(files) < 3 {
		t.Fatalf("testdata/pg*-*.zst: %v %v", files, err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	for _, f := range files {
		z, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := dec.DecodeAll(z, nil)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		base := filepath.Base(f)
		n := mustName(t, base[len("pgNN-"):len(base)-len(".zst")])
		if err := VerifySegment(n, b); err != nil {
			t.Errorf("%s: %v", base, err)
		}
		h, err := ParseLongHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: PostgreSQL %d, verified", base, h.PGVersion())
		for _, off := range []int{len(b) / 5, len(b) / 3, len(b) / 2} {
			bad := append([]byte(nil), b...)
			bad[off] ^= 0x01
			if VerifySegment(n, bad) == nil && !allZero(b[off-64:off+64]) {
				t.Errorf("%s: a bit flipped at %d is not detected", base, off)
			}
		}
	}
}
