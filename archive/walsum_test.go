package archive_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"testing"

	upstreams2 "github.com/klauspost/compress/s2"
	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/local"
)

// countingOpen counts what is read of the files it opens, and hides
// ReadAt when stream is set, as a backend that reads only streams does.
type countingOpen struct {
	archive.Storage
	stream bool
	read   int64
}

type countedFile struct {
	io.ReadCloser
	n *int64
}

func (c countedFile) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	*c.n += int64(n)
	return n, err
}

type countedFileAt struct {
	countedFile
	ra io.ReaderAt
}

func (c countedFileAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.ra.ReadAt(p, off)
	*c.n += int64(n)
	return n, err
}

func (s *countingOpen) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	rc, err := s.Storage.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	cf := countedFile{rc, &s.read}
	if ra, ok := rc.(io.ReaderAt); ok && !s.stream {
		return countedFileAt{cf, ra}, nil
	}
	return cf, nil
}

// WALChecksum returns the checksum of the original content, whatever the
// compression, reading only the sum frame of a zstd file where the
// backend reads at an offset; a file that records none says so.
func TestWALChecksum(t *testing.T) {
	ctx := context.Background()
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("walship checksums "), 200_000) // 3.6 MB, several frames
	want, _ := archive.ChecksumOf(bytes.NewReader(data))
	zst, raw, s2 := "000000010000000000000001", "000000010000000000000002", "000000010000000000000006"
	for name, c := range map[string]archive.Compression{zst: archive.Zstd, raw: archive.None, s2: archive.S2} {
		if err := archive.PutWAL(ctx, st, name, bytes.NewReader(data), c); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name     string
		stream   bool
		maxBytes int64
	}{
		{zst, false, 32},
		{zst, true, 1 << 20}, // the compressed bytes, walked, not decoded
		{raw, false, 64},     // the checksum file
		{s2, false, 28},      // its sum chunk
		{s2, true, 1 << 20},  // the chunks, walked, not decoded
	} {
		s := &countingOpen{Storage: st, stream: tc.stream}
		got, err := archive.WALChecksum(ctx, s, tc.name)
		if err != nil || got != want {
			t.Errorf("%s (stream %v): %v, %v; want %v", tc.name, tc.stream, got, err, want)
		}
		if s.read > tc.maxBytes {
			t.Errorf("%s (stream %v): read %d bytes of the archive, want at most %d", tc.name, tc.stream, s.read, tc.maxBytes)
		}
	}

	// Files that record no checksum: a zstd file of another tool (no sum
	// frame), a raw file without its checksum file, a pg_standby archive's
	// file at the root.
	plain, _ := io.ReadAll(archive.Compress(bytes.NewReader(data)))
	var plainS2 bytes.Buffer
	w := upstreams2.NewWriter(&plainS2)
	w.Write(data)
	w.Close()
	noSum := map[string]func() error{
		"000000010000000000000003": func() error {
			return st.Put(ctx, archive.WALPath("000000010000000000000003", ".zst"), bytes.NewReader(plain))
		},
		"000000010000000000000004": func() error {
			return st.Put(ctx, archive.WALPath("000000010000000000000004", ""), bytes.NewReader(data))
		},
		"00000001000000000000000A": func() error { // an S2 stream of s2's own writer
			return st.Put(ctx, archive.WALPath("00000001000000000000000A", ".s2"), bytes.NewReader(plainS2.Bytes()))
		},
		"000000010000000000000005": func() error {
			return st.Put(ctx, archive.FlatPath("000000010000000000000005"), bytes.NewReader(data))
		},
	}
	for name, put := range noSum {
		if err := put(); err != nil {
			t.Fatal(err)
		}
		for _, stream := range []bool{false, true} {
			if _, err := archive.WALChecksum(ctx, &countingOpen{Storage: st, stream: stream}, name); !errors.Is(err, archive.ErrNoChecksum) {
				t.Errorf("%s (stream %v): %v, want ErrNoChecksum", name, stream, err)
			}
		}
	}
	if _, err := archive.WALChecksum(ctx, st, "000000010000000000000009"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}
