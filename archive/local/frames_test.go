package local

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/walship/walship/archive"
)

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Put of a compressed stream writes it into the file itself (WriteFramesTo,
// raw frames with writev): the file holds exactly the stream Read returns.
func TestPutFramesWriter(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	in := append(randomBytes(3<<20+5, 1), bytes.Repeat([]byte("wal record "), 200000)...)
	want, err := io.ReadAll(archive.Compress(bytes.NewReader(in)))
	if err != nil {
		t.Fatal(err)
	}
	zr := archive.Compress(bytes.NewReader(in))
	if _, ok := zr.(archive.FramesWriter); !ok {
		t.Fatal("archive.Compress's reader is not a FramesWriter: Put would copy it through a buffer")
	}
	if err := s.Put(t.Context(), "wal/seg.zst", zr); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(s.root, "wal", "seg.zst"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("stored %d bytes (%v), want the %d bytes of the stream", len(got), err, len(want))
	}

	// A source that fails is reported as the source's failure, and
	// nothing is stored.
	boom := errors.New("segment vanished")
	err = s.Put(t.Context(), "wal/bad.zst", archive.Compress(io.MultiReader(bytes.NewReader(in[:2<<20]), failingReader{boom})))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "read source") {
		t.Errorf("Put of a failing source: got %v, want %v as a read of the source", err, boom)
	}
	if _, err := os.Stat(filepath.Join(s.root, "wal", "bad.zst")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after a failed Put: stat says %v, want no file", err)
	}

	// A cancelled context stops the writes.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Put(ctx, "wal/cancelled.zst", archive.Compress(bytes.NewReader(in))); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context: got %v, want context.Canceled", err)
	}
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

// WriteBuffers writes everything, in order, when writev(2) writes only part
// of what it was given: a pipe takes 64 KiB at a time.
func TestWriteBuffersPartial(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	var bufs [][]byte
	var want []byte
	for i := range 3000 { // more than IOV_MAX (1024) buffers, some empty
		b := randomBytes(i%700, uint64(i))
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	got := make(chan []byte)
	go func() { b, _ := io.ReadAll(pr); got <- b }()
	w := &fileWriter{ctx: t.Context(), f: pw}
	n, err := w.WriteBuffers(bufs)
	pw.Close()
	if err != nil || n != int64(len(want)) {
		t.Fatalf("WriteBuffers: %d, %v, want %d, nil", n, err, len(want))
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Errorf("the pipe read %d bytes, not the %d given in that order", len(b), len(want))
	}
	if len(bufs[1]) != 1 || !bytes.Equal(bufs[1], randomBytes(1, 1)) {
		t.Error("WriteBuffers changed the caller's slice of buffers")
	}
}

// A full archive fails a compressed Put with the archive-is-full message,
// through writev as through write, and leaves nothing behind.
func TestPutFramesDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "2m")
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Put(t.Context(), "wal/big.zst", archive.Compress(bytes.NewReader(randomBytes(4<<20, 3))))
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "archive "+dir+" is full") {
		t.Fatalf("compressed Put of 4 MiB of random bytes into 2 MiB: got %v, want ENOSPC, saying the archive is full", err)
	}
	checkNoFiles(t, filepath.Join(dir, "wal"))
}
