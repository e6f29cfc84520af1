package shipper

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/wal"
)

// bigSource is a server whose 16 MiB segments, half random and half
// blank, are all flushed but their last byte.
type bigSource struct {
	segno wal.SegNo
	data  []byte
}

const bigSegSize = 16 << 20

func newBigSource() *bigSource {
	b := make([]byte, bigSegSize)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 64; i < len(b)/2; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	binary.LittleEndian.PutUint16(b[0:], 0xD110)
	binary.LittleEndian.PutUint16(b[2:], 0x0002)
	binary.LittleEndian.PutUint32(b[4:], 1)
	binary.LittleEndian.PutUint64(b[24:], testSysID)
	binary.LittleEndian.PutUint32(b[32:], bigSegSize)
	binary.LittleEndian.PutUint32(b[36:], 8192)
	return &bigSource{data: b}
}

func (s *bigSource) next() { s.segno++ }

func (s *bigSource) Flush(context.Context) (Position, error) {
	return Position{LSN: s.segno.Start(bigSegSize) + bigSegSize - 1, TLI: 1, SegmentSize: bigSegSize}, nil
}

// OpenSegment opens a file of every segment's bytes, but its page address.
func (s *bigSource) OpenSegment(name string) (SegmentFile, error) {
	n, err := wal.ParseName(name)
	if err != nil {
		return nil, err
	}
	segno, err := n.SegNo(bigSegSize)
	return bigFile{s.data, segno}, err
}

type bigFile struct {
	data  []byte
	segno wal.SegNo
}

func (f bigFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := bytes.NewReader(f.data).ReadAt(p, off)
	var addr [8]byte
	binary.LittleEndian.PutUint64(addr[:], uint64(f.segno.Start(bigSegSize)))
	for i := max(off, 8); i < min(off+int64(n), 16); i++ {
		p[i-off] = addr[i-8]
	}
	return n, err
}

func (bigFile) Close() error { return nil }

// A Tail holds a couple of frame-sized buffers, not its increments, and a
// warm one allocates little per increment: under a 48 MB/s load its peak
// RSS followed what it kept and what it threw away (BENCHMARKS.md, "Memory:
// peak RSS"). Reading a whole increment of maxIncrement bytes and its
// compressed copy into memory, as walship 0.x did, kept 17 MiB.
func TestTailMemoryPerIncrement(t *testing.T) {
	for _, c := range []archive.Compression{archive.Zstd, archive.None} {
		t.Run(c.String(), func(t *testing.T) {
			_, st := newTestArchive(t)
			src := newBigSource()
			tl := newTail(st, src, c)
			src.next()
			var m0, m1, m2 runtime.MemStats
			runtime.GC()
			runtime.GC() // and what sync.Pools dropped
			runtime.ReadMemStats(&m0)
			step(t, tl) // warms up: two increments of the first segment
			runtime.GC()
			runtime.GC()
			runtime.ReadMemStats(&m1)
			const segments = 4
			for range segments {
				src.next()
				step(t, tl) // the rest of the last segment, two of the next
			}
			runtime.ReadMemStats(&m2)
			runtime.KeepAlive(tl)
			if got, want := tl.Stats().Increments, int64(2+3*segments); got != want {
				t.Fatalf("shipped %d increments, want %d", got, want)
			}
			kept := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
			perInc := int64(m2.TotalAlloc-m1.TotalAlloc) / (3 * segments)
			t.Logf("kept %d KiB, allocated %d KiB per increment", kept>>10, perInc>>10)
			if kept > 6<<20 {
				t.Errorf("the Tail keeps %d KiB between increments, want at most 6 MiB", kept>>10)
			}
			if perInc > 256<<10 {
				t.Errorf("an increment allocates %d KiB, want at most 256 KiB", perInc>>10)
			}
		})
	}
}

// recycleAfterRead is a server whose segment file is recycled once bytes
// past its first page header have been read from it: between the read of
// an increment and the check that follows it.
type recycleAfterRead struct{ *fakeServer }

func (s recycleAfterRead) OpenSegment(name string) (SegmentFile, error) {
	f, err := s.fakeServer.OpenSegment(name)
	if err != nil {
		return nil, err
	}
	return recycleFile{f, s.fakeServer, name}, nil
}

type recycleFile struct {
	SegmentFile
	s    *fakeServer
	name string
}

func (f recycleFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.SegmentFile.ReadAt(p, off)
	if len(p) > wal.LongHeaderSize {
		f.s.mu.Lock()
		f.s.recycled[f.name] = true
		f.s.mu.Unlock()
	}
	return n, err
}

// An increment streams to the archive as it is read, so the check that the
// file still held the segment comes after its bytes were sent: when it
// fails, the Put fails and nothing of the increment is stored.
func TestTailRecycledDuringRead(t *testing.T) {
	for _, c := range []archive.Compression{archive.Zstd, archive.None} {
		t.Run(c.String(), func(t *testing.T) {
			_, st := newTestArchive(t)
			src := newFakeServer(t, 1, lsn(2, 1000))
			tl := newTail(st, recycleAfterRead{src}, c)
			err := tl.Step(context.Background())
			if err == nil || !strings.Contains(err.Error(), "not archived") {
				t.Fatalf("Step: got %v, want an error saying the segment is not archived", err)
			}
			if got := ranges(t, st, segName(1, 2)); len(got) != 0 {
				t.Fatalf("increments %v: bytes of a recycled file were shipped", got)
			}
			if n := tl.Stats().Increments; n != 0 {
				t.Errorf("counted %d increments", n)
			}
		})
	}
}
