package archive_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

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

// slowStat answers Stat after a delay per path, and fails the paths in
// fail: the answers of the names StatWAL asks for at once come back in
// any order.
type slowStat struct {
	archive.Storage
	delay map[string]time.Duration
	fail  map[string]error
	calls atomic.Int32
}

func (s *slowStat) Stat(ctx context.Context, name string) (archive.FileInfo, error) {
	s.calls.Add(1)
	time.Sleep(s.delay[name])
	if err := s.fail[name]; err != nil {
		return archive.FileInfo{}, err
	}
	return s.Storage.Stat(ctx, name)
}

// StatWAL asks for every name of a WAL file at once (one round trip, not
// three), and answers as asking in turn would: the first name found in
// readers' order wins, and an error on an earlier name is not hidden by a
// later name found.
func TestStatWALAnswersInOrder(t *testing.T) {
	ctx := context.Background()
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	name := "000000010000000000000004"
	if err := archive.PutWAL(ctx, st, name, bytes.NewReader([]byte("zstd copy")), archive.Zstd); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, archive.WALPath(name, ""), bytes.NewReader([]byte("raw copy"))); err != nil {
		t.Fatal(err)
	}
	zst, raw := archive.WALPath(name, ".zst"), archive.WALPath(name, "")

	// The .zst answers last, yet is the copy readers take.
	s := &slowStat{Storage: st, delay: map[string]time.Duration{zst: 100 * time.Millisecond}}
	if _, suffix, err := archive.StatWAL(ctx, s, name); err != nil || suffix != ".zst" {
		t.Errorf("both copies archived: suffix %q, %v; want .zst", suffix, err)
	}
	// A missing file: every name asked, together.
	s = &slowStat{Storage: st, delay: map[string]time.Duration{}}
	missing := "000000010000000000000009"
	for _, p := range []string{archive.WALPath(missing, ".zst"), archive.WALPath(missing, ""), missing} {
		s.delay[p] = 100 * time.Millisecond
	}
	start := time.Now()
	if _, _, err := archive.StatWAL(ctx, s, missing); !archive.IsNotExist(err) {
		t.Errorf("missing file: %v, want not found", err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("missing file: StatWAL took %v for three names of 100 ms each, want them asked at once", d)
	}
	if s.calls.Load() != 3 {
		t.Errorf("missing file: %d names asked, want 3", s.calls.Load())
	}
	// The .zst cannot be read: that is the answer, not the raw copy.
	down := errors.New("connection reset")
	s = &slowStat{Storage: st, fail: map[string]error{zst: down}}
	if _, _, err := archive.StatWAL(ctx, s, name); !errors.Is(err, down) {
		t.Errorf(".zst unreadable, raw copy archived: %v, want the .zst's error", err)
	}
	// An error on a later name after an earlier one is found: found.
	s = &slowStat{Storage: st, fail: map[string]error{raw: down}}
	if _, suffix, err := archive.StatWAL(ctx, s, name); err != nil || suffix != ".zst" {
		t.Errorf(".zst archived, raw copy unreadable: suffix %q, %v; want .zst", suffix, err)
	}
}
