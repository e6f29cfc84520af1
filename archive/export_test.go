package archive

import (
	"io"
	"testing"
)

// TrustsSumFrame reports whether rc, from OpenWAL, reads a zstd file by its
// sum frame alone (see newSummedFrameReader).
func TrustsSumFrame(rc io.ReadCloser) bool {
	r, ok := rc.(readCloser)
	return ok && r.trustSum
}

// CompressSummedForTest returns in as push stores it: zstd frames and a
// sum frame.
func CompressSummedForTest(t testing.TB, in []byte) []byte { return compressSummedAll(t, in) }

// CompressForTest returns in as zstd frames without a sum frame, as an
// older walship wrote them.
func CompressForTest(t testing.TB, in []byte) []byte { return compressAll(t, in) }

// CompressibleForTest is compressible: text every codec compresses.
func CompressibleForTest(n int, seed uint64) []byte { return compressible(n, seed) }

// IncompressibleForTest is incompressibleBytes: random bytes.
func IncompressibleForTest(n int) []byte { return incompressibleBytes(n) }
