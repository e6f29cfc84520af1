package archive_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/local"
)

func mustLocal(t *testing.T, dir string) archive.Storage {
	t.Helper()
	st, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Through the archive: a segment pushed as archive.S2 is stored as .s2, found by
// archive.StatWAL, read back by archive.OpenWAL (trusting its sum chunk on a local disk),
// and its checksum comes from its last bytes; a .history pushed so is
// stored as zstd.
func TestPutWALS2(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := mustLocal(t, dir)
	seg := "000000010000000000000007"
	in := append(archive.CompressibleForTest(1<<20, 3), archive.IncompressibleForTest(600<<10)...)
	if err := archive.PutWAL(ctx, st, seg, bytes.NewReader(in), archive.S2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, archive.WALPath(seg, ".s2"))); err != nil {
		t.Fatalf("the segment is not stored as .s2: %v", err)
	}
	if _, suffix, err := archive.StatWAL(ctx, st, seg); err != nil || suffix != ".s2" {
		t.Errorf("archive.StatWAL: suffix %q, %v; want .s2", suffix, err)
	}
	rc, size, err := archive.OpenWAL(ctx, st, seg)
	if err != nil {
		t.Fatal(err)
	}
	if !archive.TrustsSumFrame(rc) || size != -1 {
		t.Errorf("archive.OpenWAL of a local .s2: trusting its sum chunk %v, size %d; want true, -1", archive.TrustsSumFrame(rc), size)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, in) {
		t.Fatalf("archive.OpenWAL: %d bytes, %v", len(got), err)
	}
	want, _ := archive.ChecksumOf(bytes.NewReader(in))
	if c, err := archive.WALChecksum(ctx, st, seg); err != nil || c != want {
		t.Errorf("archive.WALChecksum: %+v, %v; want %+v", c, err, want)
	}
	// Without ReadAt (a remote backend), the chunks are walked.
	if c, err := archive.WALChecksum(ctx, &countingOpen{Storage: st, stream: true}, seg); err != nil || c != want {
		t.Errorf("archive.WALChecksum walking the chunks: %+v, %v; want %+v", c, err, want)
	}
	if err := archive.PutWAL(ctx, st, seg, bytes.NewReader(in), archive.Zstd); !archive.IsExist(err) {
		t.Errorf("a second push under another compression: %v, want ErrExist", err)
	}
	hist := "00000002.history"
	if err := archive.PutWAL(ctx, st, hist, bytes.NewReader([]byte("1\t0/3000000\tno recovery target specified\n")), archive.S2); err != nil {
		t.Fatal(err)
	}
	if _, suffix, err := archive.StatWAL(ctx, st, hist); err != nil || suffix != ".zst" {
		t.Errorf("a .history pushed with s2: suffix %q, %v; want .zst", suffix, err)
	}
}
