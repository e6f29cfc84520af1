package shipper

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/walship/walship/archive"
)

// walReads counts the bytes read of the archive's wal/ files.
type walReads struct {
	archive.Storage
	mu sync.Mutex
	n  map[string]int64
}

type walReader struct {
	io.ReadCloser
	add func(int)
}

func (r walReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.add(n)
	return n, err
}

type walReaderAt struct {
	walReader
	ra io.ReaderAt
}

func (r walReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.ra.ReadAt(p, off)
	r.add(n)
	return n, err
}

func (s *walReads) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	rc, err := s.Storage.Open(ctx, name)
	if err != nil || !strings.HasPrefix(name, archive.WALDir+"/") {
		return rc, err
	}
	r := walReader{rc, func(n int) { s.mu.Lock(); s.n[name] += int64(n); s.mu.Unlock() }}
	if ra, ok := rc.(io.ReaderAt); ok {
		return walReaderAt{r, ra}, nil
	}
	return r, nil
}

func (s *walReads) total() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t int64
	for _, n := range s.n {
		t += n
	}
	return t
}

// A re-push compares checksums: of the archived copy it reads the zstd
// file's sum frame, or the raw file's checksum file, never the data; an
// identical file succeeds and a different one conflicts, the archived file
// untouched.
func TestRePushComparesChecksums(t *testing.T) {
	for _, c := range []archive.Compression{archive.Zstd, archive.None, archive.S2} {
		t.Run(c.String(), func(t *testing.T) {
			f := newFixture(t)
			name := segName(1, 12)
			seg := fakeSegment(t, testSysID, 1, 12, 5)
			path := f.file(name, seg)
			if err := f.push(c, path, name); err != nil {
				t.Fatal(err)
			}
			counted := &walReads{Storage: f.st, n: map[string]int64{}}
			p := &Pusher{Storage: counted, Compression: c, SystemID: testSysID}
			if err := p.Push(context.Background(), path, name); err != nil {
				t.Fatalf("identical re-push: %v", err)
			}
			if got := counted.total(); got > 64 {
				t.Errorf("identical re-push read %d bytes of wal/ (%v), want only the recorded checksum", got, counted.n)
			}

			other := fakeSegment(t, testSysID, 1, 12, 6)
			counted.n = map[string]int64{}
			err := p.Push(context.Background(), f.file(name, other), name)
			if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "xxh64") {
				t.Fatalf("re-push of different content: %v, want ErrConflict naming both checksums", err)
			}
			if got := counted.total(); got > 64 {
				t.Errorf("conflicting re-push read %d bytes of wal/, want only the recorded checksum", got)
			}
			if got := f.archived(name); !bytes.Equal(got, seg) {
				t.Error("the archived file changed after a conflicting push")
			}
		})
	}
}

// A zstd file without a sum frame (an older walship's, another tool's) is
// compared by its content, as before.
func TestRePushWithoutSumFrame(t *testing.T) {
	f := newFixture(t)
	name := segName(1, 13)
	seg := fakeSegment(t, testSysID, 1, 13, 7)
	path := f.file(name, seg)
	if err := f.push(archive.Zstd, path, name); err != nil { // records the identity
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := f.st.Remove(ctx, archive.WALPath(name, ".zst")); err != nil {
		t.Fatal(err)
	}
	if err := f.st.Put(ctx, archive.WALPath(name, ".zst"), archive.Compress(bytes.NewReader(seg))); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.WALChecksum(ctx, f.st, name); !errors.Is(err, archive.ErrNoChecksum) {
		t.Fatalf("WALChecksum: %v, want ErrNoChecksum", err)
	}
	if err := f.push(archive.Zstd, path, name); err != nil {
		t.Errorf("identical re-push: %v", err)
	}
	err := f.push(archive.Zstd, f.file(name, fakeSegment(t, testSysID, 1, 13, 8)), name)
	if !errors.Is(err, ErrConflict) {
		t.Errorf("re-push of different content: %v, want ErrConflict", err)
	}
}
