package archive_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/local"
)

func readWAL(t *testing.T, st archive.Storage, name string) ([]byte, error) {
	t.Helper()
	rc, _, err := archive.OpenWAL(context.Background(), st, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// A raw file carries a checksum file; a byte flipped in the raw file, or a
// raw file cut short, reads as ErrCorrupt.
func TestRawChecksum(t *testing.T) {
	root := t.TempDir()
	st, err := local.New(root)
	if err != nil {
		t.Fatal(err)
	}
	name := "000000010000000000000003"
	data := bytes.Repeat([]byte("walship "), 1<<17)
	if err := archive.PutWAL(context.Background(), st, name, bytes.NewReader(data), archive.None); err != nil {
		t.Fatal(err)
	}
	if got, err := readWAL(t, st, name); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v (%d bytes)", err, len(got))
	}
	path := filepath.Join(root, "wal", name)
	for _, damage := range []func([]byte) []byte{
		func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b },
		func(b []byte) []byte { return b[:len(b)-8192] },
	} {
		if err := os.WriteFile(path, damage(bytes.Clone(data)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readWAL(t, st, name); !errors.Is(err, archive.ErrCorrupt) {
			t.Errorf("damaged raw file: %v, want ErrCorrupt", err)
		}
	}
}

// A pg_standby archive keeps its files at the root, written by cp: they
// are read there, raw and unchecked.
func TestFlatArchiveRead(t *testing.T) {
	root := t.TempDir()
	st, err := local.New(root)
	if err != nil {
		t.Fatal(err)
	}
	name := "000000010000000000000003"
	if err := os.WriteFile(filepath.Join(root, name), []byte("segment"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, suffix, err := archive.StatWAL(context.Background(), st, name); err != nil || suffix != "" {
		t.Fatalf("StatWAL of a flat file: suffix %q, %v", suffix, err)
	}
	rc, size, err := archive.OpenWAL(context.Background(), st, name)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	raw, ok := rc.(*archive.RawReader)
	if !ok || !raw.Flat() || raw.Checked() || size != 7 {
		t.Errorf("flat file: %T flat=%v checked=%v size %d; want an unchecked flat raw reader of 7 bytes", rc, ok && raw.Flat(), ok && raw.Checked(), size)
	}
	// walship's own copy under wal/ wins over the flat one.
	if err := archive.PutWAL(context.Background(), st, "000000010000000000000004", bytes.NewReader([]byte("x")), archive.Zstd); err != nil {
		t.Fatal(err)
	}
	if err := archive.PutWAL(context.Background(), st, name, bytes.NewReader([]byte("x")), archive.Zstd); !archive.IsExist(err) {
		t.Errorf("PutWAL of a name the flat archive holds: %v, want fs.ErrExist", err)
	}
}
