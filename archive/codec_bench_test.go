package archive

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"

	"github.com/klauspost/compress/s2"
)

// BenchmarkWALCodecs compares, on real WAL segments, the zstd encoding
// push uses with S2 as push --compress s2 writes it (and as upstream's
// stream writer does): the figures BENCHMARKS.md ("Push") gives for the
// codecs. The segments are those bench/run prepares, or WALSHIP_BENCH_WAL:
//
//	go test -run '^$' -bench WALCodecs ./archive
//	WALSHIP_BENCH_WAL=/var/tmp/walship-bench/src/random go test -run '^$' -bench WALCodecs ./archive
//
// ns/op and MB/s are per 16 MiB segment; "stored-%" is the compressed size.
func BenchmarkWALCodecs(b *testing.B) {
	dir := os.Getenv("WALSHIP_BENCH_WAL")
	if dir == "" {
		dir = "/var/tmp/walship-bench/src/pgbench"
	}
	files, _ := filepath.Glob(filepath.Join(dir, "0*"))
	sort.Strings(files)
	if len(files) == 0 {
		b.Skipf("no WAL segments in %s: run bench/run prepare, or set WALSHIP_BENCH_WAL", dir)
	}
	var segs [][]byte
	for _, f := range files[:min(10, len(files))] {
		s, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		segs = append(segs, s)
	}
	run := func(name string, encode func(seg []byte, dst *bytes.Buffer)) {
		b.Run(name, func(b *testing.B) {
			var out bytes.Buffer
			var stored, in int64
			b.SetBytes(int64(len(segs[0])))
			for i := 0; b.Loop(); i++ {
				seg := segs[i%len(segs)]
				out.Reset()
				encode(seg, &out)
				stored += int64(out.Len())
				in += int64(len(seg))
			}
			b.ReportMetric(100*float64(stored)/float64(in), "stored-%")
		})
	}
	run("zstd-push", func(seg []byte, dst *bytes.Buffer) { // what push runs: frames on every CPU
		rc := compressSummed(bytes.NewReader(seg))
		io.Copy(dst, rc)
		rc.Close()
	})
	run("zstd-one-cpu", func(seg []byte, dst *bytes.Buffer) {
		for off := 0; off < len(seg); off += frameSize {
			dst.Write(compressFrame(nil, seg[off:min(off+frameSize, len(seg))]))
		}
	})
	run("s2-push", func(seg []byte, dst *bytes.Buffer) { // what push --compress s2 runs
		rc := compressSummedAs(bytes.NewReader(seg), S2)
		io.Copy(dst, rc)
		rc.Close()
	})
	run("s2-push-like", func(seg []byte, dst *bytes.Buffer) { // its stream format, blocks on every CPU
		w := s2.NewWriter(dst, s2.WriterConcurrency(runtime.GOMAXPROCS(0)), s2.WriterBlockSize(frameSize))
		w.Write(seg)
		w.Close()
	})
	run("s2-one-cpu", func(seg []byte, dst *bytes.Buffer) {
		for off := 0; off < len(seg); off += frameSize {
			dst.Write(s2.Encode(nil, seg[off:min(off+frameSize, len(seg))]))
		}
	})
	decode := func(name string, encode func(seg []byte) []byte, dec func(stored []byte, w io.Writer) error) {
		stored := make([][]byte, len(segs))
		for i, seg := range segs {
			stored[i] = encode(seg)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(segs[0])))
			var out bytes.Buffer
			for i := 0; b.Loop(); i++ {
				out.Reset()
				if err := dec(stored[i%len(stored)], &out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	decode("zstd-fetch", func(seg []byte) []byte {
		var buf bytes.Buffer
		rc := compressSummed(bytes.NewReader(seg))
		io.Copy(&buf, rc)
		rc.Close()
		return buf.Bytes()
	}, func(stored []byte, w io.Writer) error { // every frame's checksum and the sum checked
		fr := NewFrameReader(bytes.NewReader(stored))
		defer fr.Close()
		_, err := fr.WriteTo(w)
		return err
	})
	decode("zstd-fetch-by-sum", func(seg []byte) []byte { // a local file, its sum frame read first (OpenWAL)
		var buf bytes.Buffer
		rc := compressSummed(bytes.NewReader(seg))
		io.Copy(&buf, rc)
		rc.Close()
		return buf.Bytes()
	}, func(stored []byte, w io.Writer) error {
		fr := newSummedFrameReader(Zstd, bytes.NewReader(stored))
		defer fr.Close()
		_, err := fr.WriteTo(w)
		return err
	})
	decode("s2-fetch-like", func(seg []byte) []byte {
		var buf bytes.Buffer
		w := s2.NewWriter(&buf, s2.WriterBlockSize(frameSize))
		w.Write(seg)
		w.Close()
		return buf.Bytes()
	}, func(stored []byte, w io.Writer) error { // every block's CRC-32C checked
		_, err := s2.NewReader(bytes.NewReader(stored)).DecodeConcurrent(w, runtime.GOMAXPROCS(0))
		return err
	})
	for _, trusting := range []bool{false, true} {
		name := "s2-fetch" // every chunk's CRC-32C and the sum checked
		if trusting {
			name = "s2-fetch-by-sum" // a local file: the sum alone (OpenWAL)
		}
		decode(name, func(seg []byte) []byte {
			var buf bytes.Buffer
			rc := compressSummedAs(bytes.NewReader(seg), S2)
			io.Copy(&buf, rc)
			rc.Close()
			return buf.Bytes()
		}, func(stored []byte, w io.Writer) error {
			fr := NewFrameReaderOf(S2, bytes.NewReader(stored))
			if trusting {
				fr = newSummedFrameReader(S2, bytes.NewReader(stored))
			}
			defer fr.Close()
			_, err := fr.WriteTo(w)
			return err
		})
	}
}
