package archive_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
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
	for _, p := range []string{archive.WALPath(missing, ".zst"), archive.WALPath(missing, ""), archive.WALPath(missing, ".s2"), missing} {
		s.delay[p] = 100 * time.Millisecond
	}
	start := time.Now()
	if _, _, err := archive.StatWAL(ctx, s, missing); !archive.IsNotExist(err) {
		t.Errorf("missing file: %v, want not found", err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("missing file: StatWAL took %v for four names of 100 ms each, want them asked at once", d)
	}
	if s.calls.Load() != 4 {
		t.Errorf("missing segment: %d names asked, want 4 (.zst, raw, .s2, the root)", s.calls.Load())
	}
	// A .history is never stored as S2: one name less to ask.
	s = &slowStat{Storage: st}
	if _, _, err := archive.StatWAL(ctx, s, "00000009.history"); !archive.IsNotExist(err) {
		t.Errorf("missing history: %v, want not found", err)
	}
	if s.calls.Load() != 3 {
		t.Errorf("missing history: %d names asked, want 3 (.zst, raw, the root)", s.calls.Load())
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

// gatedPut holds the Put of a raw WAL file, once it has read its last byte,
// until the Put of its checksum file has begun: a push that wrote the
// checksum only after the file was stored would wait here for ever.
type gatedPut struct {
	archive.Storage
	sumBegun chan struct{}
	once     sync.Once
	failWAL  error // returned by the WAL file's Put after it read all
}

func (g *gatedPut) Put(ctx context.Context, name string, r io.Reader) error {
	if filepath.Ext(name) == archive.ChecksumSuffix {
		g.once.Do(func() { close(g.sumBegun) })
		return g.Storage.Put(ctx, name, r)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	select {
	case <-g.sumBegun:
	case <-time.After(10 * time.Second):
		return errors.New("the checksum file's Put did not begin while the file's Put was in progress")
	}
	if g.failWAL != nil {
		return g.failWAL
	}
	return g.Storage.Put(ctx, name, bytes.NewReader(b))
}

// A raw file's checksum file is written while the file itself is made
// durable, not after it; the push still answers with the file's own result.
func TestRawChecksumOverlapsPut(t *testing.T) {
	ctx := context.Background()
	name := "000000010000000000000004"
	data := bytes.Repeat([]byte("overlap "), 1<<16)

	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedPut{Storage: st, sumBegun: make(chan struct{})}
	if err := archive.PutWAL(ctx, g, name, bytes.NewReader(data), archive.None); err != nil {
		t.Fatal(err)
	}
	sum, err := archive.WALChecksum(ctx, st, name)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := archive.ChecksumOf(bytes.NewReader(data)); sum != want {
		t.Fatalf("stored checksum %v, want %v", sum, want)
	}
	if got, err := readWAL(t, st, name); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v (%d bytes)", err, len(got))
	}

	// The file's Put fails after the checksum went out: the push fails, and
	// the next push of the name stores both, the checksum kept as it is.
	st2, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	full := errors.New("no space left on device")
	g2 := &gatedPut{Storage: st2, sumBegun: make(chan struct{}), failWAL: full}
	if err := archive.PutWAL(ctx, g2, name, bytes.NewReader(data), archive.None); !errors.Is(err, full) {
		t.Fatalf("failed Put: %v, want %v", err, full)
	}
	if _, err := readWAL(t, st2, name); !archive.IsNotExist(err) {
		t.Fatalf("after a failed Put the file reads: %v, want not found", err)
	}
	if err := archive.PutWAL(ctx, st2, name, bytes.NewReader(data), archive.None); err != nil {
		t.Fatal(err)
	}
	if got, err := readWAL(t, st2, name); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back after the retry: %v (%d bytes)", err, len(got))
	}

	// A checksum file of other content (an earlier file of the name) is
	// replaced once the file is stored, as WriteChecksum does.
	st3, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := archive.WriteChecksum(ctx, st3, name, archive.Checksum{Sum: 1, Size: 1}); err != nil {
		t.Fatal(err)
	}
	g3 := &gatedPut{Storage: st3, sumBegun: make(chan struct{})}
	if err := archive.PutWAL(ctx, g3, name, bytes.NewReader(data), archive.None); err != nil {
		t.Fatal(err)
	}
	if got, err := readWAL(t, st3, name); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back over a stale checksum: %v (%d bytes)", err, len(got))
	}
}
