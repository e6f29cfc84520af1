package shipper

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/local"
	"github.com/walship/walship/wal"
)

const (
	testSegSize = 1 << 20
	testSysID   = 7300000000000000001
)

// fakeSegment returns a segment of testSegSize bytes whose first page header
// says it is segment segno of timeline tli of cluster sysid, with random
// record bytes after it.
func fakeSegment(t *testing.T, sysid uint64, tli uint32, segno uint64, seed uint64) []byte {
	t.Helper()
	b := make([]byte, testSegSize)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := 64; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	binary.LittleEndian.PutUint16(b[0:], 0xD110) // PostgreSQL 15
	binary.LittleEndian.PutUint16(b[2:], 0x0002) // XLP_LONG_HEADER
	binary.LittleEndian.PutUint32(b[4:], tli)
	binary.LittleEndian.PutUint64(b[8:], segno*testSegSize)
	binary.LittleEndian.PutUint64(b[24:], sysid)
	binary.LittleEndian.PutUint32(b[32:], testSegSize)
	binary.LittleEndian.PutUint32(b[36:], 8192)
	return b
}

func segName(tli uint32, segno uint64) string {
	return wal.SegmentName(wal.TimeLine(tli), wal.SegNo(segno), testSegSize)
}

type fixture struct {
	t   *testing.T
	dir string // where PostgreSQL's files are
	st  archive.Storage
}

func newFixture(t *testing.T) *fixture {
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, dir: t.TempDir(), st: st}
}

func (f *fixture) file(name string, b []byte) string {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *fixture) push(c archive.Compression, path, name string) error {
	p := &Pusher{Storage: f.st, Compression: c, SystemID: testSysID}
	return p.Push(context.Background(), path, name)
}

func (f *fixture) archived(name string) []byte {
	f.t.Helper()
	rc, _, err := archive.OpenWAL(context.Background(), f.st, name)
	if err != nil {
		f.t.Fatalf("open archived %s: %v", name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		f.t.Fatalf("read archived %s: %v", name, err)
	}
	return b
}

func (f *fixture) walFiles() []string {
	f.t.Helper()
	fis, err := f.st.List(context.Background(), archive.WALDir)
	if err != nil {
		f.t.Fatal(err)
	}
	var names []string
	for _, fi := range fis {
		names = append(names, fi.Name)
	}
	return names
}

func TestPushStoresSegmentAndIdentity(t *testing.T) {
	for _, c := range []archive.Compression{archive.Zstd, archive.None, archive.S2} {
		t.Run(c.String(), func(t *testing.T) {
			f := newFixture(t)
			seg := fakeSegment(t, testSysID, 1, 5, 1)
			name := segName(1, 5)
			if err := f.push(c, f.file(name, seg), name); err != nil {
				t.Fatalf("push: %v", err)
			}
			if got := f.archived(name); !bytes.Equal(got, seg) {
				t.Fatalf("archived copy differs from the original (%d bytes, want %d)", len(got), len(seg))
			}
			want := []string{name + c.Suffix()}
			if c == archive.None {
				want = append(want, name+archive.ChecksumSuffix) // its checksum
			}
			if got := f.walFiles(); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("wal/ holds %v, want %v", got, want)
			}
			id, err := archive.ReadIdentity(context.Background(), f.st)
			if err != nil {
				t.Fatal(err)
			}
			if id.SystemID != testSysID || id.SegmentSize != testSegSize || id.PGVersion != 15 {
				t.Errorf("identity = %+v, want system id %d, segment size %d, version 15", id, uint64(testSysID), testSegSize)
			}
		})
	}
}

func TestPushIdenticalAgainSucceeds(t *testing.T) {
	f := newFixture(t)
	seg := fakeSegment(t, testSysID, 1, 7, 2)
	name := segName(1, 7)
	p := f.file(name, seg)
	if err := f.push(archive.Zstd, p, name); err != nil {
		t.Fatal(err)
	}
	// Again, and again with the other compression: the content decides.
	if err := f.push(archive.Zstd, p, name); err != nil {
		t.Errorf("identical re-push: %v, want success", err)
	}
	if err := f.push(archive.None, p, name); err != nil {
		t.Errorf("identical re-push uncompressed: %v, want success", err)
	}
	if err := f.push(archive.S2, p, name); err != nil {
		t.Errorf("identical re-push as S2: %v, want success", err)
	}
	if got := f.walFiles(); len(got) != 1 {
		t.Errorf("wal/ holds %v, want one file", got)
	}
}

func TestPushDifferentContentConflicts(t *testing.T) {
	f := newFixture(t)
	name := segName(1, 9)
	first := fakeSegment(t, testSysID, 1, 9, 3)
	if err := f.push(archive.Zstd, f.file(name, first), name); err != nil {
		t.Fatal(err)
	}
	second := fakeSegment(t, testSysID, 1, 9, 4)
	err := f.push(archive.Zstd, f.file(name, second), name)
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("push of different content: %v, want ErrConflict", err)
	}
	if got := f.archived(name); !bytes.Equal(got, first) {
		t.Error("the archived file changed after a conflicting push")
	}
}

func TestPushHistoryNeverReplaced(t *testing.T) {
	f := newFixture(t)
	name := "00000002.history"
	orig := []byte("1\t0/3000060\tno recovery target specified\n")
	if err := f.push(archive.Zstd, f.file(name, orig), name); err != nil {
		t.Fatal(err)
	}
	if err := f.push(archive.Zstd, f.file(name, orig), name); err != nil {
		t.Errorf("identical history re-push: %v", err)
	}
	other := []byte("1\t0/4000060\tno recovery target specified\n")
	if err := f.push(archive.Zstd, f.file(name, other), name); !errors.Is(err, ErrConflict) {
		t.Errorf("different history: %v, want ErrConflict", err)
	}
	if got := f.archived(name); !bytes.Equal(got, orig) {
		t.Errorf("archived history = %q, want %q", got, orig)
	}
}

func TestPushRefusesBadFiles(t *testing.T) {
	good := func(t *testing.T) []byte { return fakeSegment(t, testSysID, 1, 3, 5) }
	tests := []struct {
		name    string
		file    func(t *testing.T) []byte
		wantErr error
	}{
		{"truncated", func(t *testing.T) []byte { return good(t)[:testSegSize/2] }, wal.ErrSegmentSize},
		{"oversized", func(t *testing.T) []byte { return append(good(t), 0) }, wal.ErrSegmentSize},
		{"empty", func(t *testing.T) []byte { return nil }, ErrBadFile},
		{"no header", func(t *testing.T) []byte { return make([]byte, testSegSize) }, wal.ErrNotWAL},
		{"other segment's header", func(t *testing.T) []byte { return fakeSegment(t, testSysID, 1, 4, 5) }, wal.ErrWrongSegment},
		{"later timeline's header", func(t *testing.T) []byte { return fakeSegment(t, testSysID, 2, 3, 5) }, wal.ErrWrongSegment},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			name := segName(1, 3)
			err := f.push(archive.Zstd, f.file(name, tt.file(t)), name)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("push: %v, want %v", err, tt.wantErr)
			}
			if got := f.walFiles(); len(got) != 0 {
				t.Errorf("wal/ holds %v after a refused push, want nothing", got)
			}
		})
	}
}

func TestPushRefusesForeignCluster(t *testing.T) {
	f := newFixture(t)
	if err := f.push(archive.Zstd, f.file(segName(1, 1), fakeSegment(t, testSysID, 1, 1, 6)), segName(1, 1)); err != nil {
		t.Fatal(err)
	}
	name := segName(1, 2)
	err := f.push(archive.Zstd, f.file(name, fakeSegment(t, testSysID+1, 1, 2, 6)), name)
	if !errors.Is(err, wal.ErrForeignSystem) {
		t.Fatalf("push of another cluster's segment: %v, want ErrForeignSystem", err)
	}
	if _, _, err := archive.StatWAL(context.Background(), f.st, name); !archive.IsNotExist(err) {
		t.Errorf("foreign segment is in the archive (stat: %v)", err)
	}
}

func TestPushRefusesBadNames(t *testing.T) {
	f := newFixture(t)
	p := f.file("x", fakeSegment(t, testSysID, 1, 1, 7))
	for _, name := range []string{"", "../000000010000000000000001", "000000010000000000000001/", "a/b",
		"000000010000000000000001.zst", "RECOVERYXLOG", "00000001000000000000001", "000000010000000000000001 "} {
		err := f.push(archive.Zstd, p, name)
		if !errors.Is(err, wal.ErrInvalidName) {
			t.Errorf("push as %q: %v, want ErrInvalidName", name, err)
		}
	}
	if got := f.walFiles(); len(got) != 0 {
		t.Errorf("wal/ holds %v, want nothing", got)
	}
	if _, err := archive.ReadIdentity(context.Background(), f.st); !errors.Is(err, archive.ErrNoIdentity) {
		t.Errorf("identity after refused pushes: %v, want none", err)
	}
}

func TestPushPartialAndBackup(t *testing.T) {
	f := newFixture(t)
	seg := fakeSegment(t, testSysID, 1, 12, 8)
	partial := segName(1, 12) + ".partial"
	if err := f.push(archive.Zstd, f.file(partial, seg), partial); err != nil {
		t.Fatalf("push .partial: %v", err)
	}
	backup := segName(1, 12) + ".00000028.backup"
	start := wal.SegNo(12).Start(testSegSize) + 0x28
	label := []byte(fmt.Sprintf("START WAL LOCATION: %s (file %s)\nSTOP WAL LOCATION: %s (file %s)\n"+
		"CHECKPOINT LOCATION: %s\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nLABEL: test\n",
		start, segName(1, 12), start+0x100, segName(1, 12), start+0x60))
	if err := f.push(archive.Zstd, f.file(backup, label), backup); err != nil {
		t.Fatalf("push .backup: %v", err)
	}
	if got := f.archived(backup); !bytes.Equal(got, label) {
		t.Errorf("archived .backup = %q, want %q", got, label)
	}
}

func TestPushMissingSource(t *testing.T) {
	f := newFixture(t)
	name := segName(1, 1)
	if err := f.push(archive.Zstd, filepath.Join(f.dir, "nope"), name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("push of a missing file: %v, want not-exist", err)
	}
}
