package archive_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/local"
)

// OpenWAL reads a local zstd file by its sum frame, found with one pread,
// and a file without one (an older walship's, the zstd tool's) by its
// frames' checksums.
func TestOpenWALTrustsLocalSumFrame(t *testing.T) {
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	in := bytes.Repeat([]byte("trusted sum frame "), 1<<17)
	for _, tc := range []struct {
		name  string
		z     []byte
		trust bool
	}{
		{"000000010000000000000001", archive.CompressSummedForTest(t, in), true},
		{"000000010000000000000002", archive.CompressForTest(t, in), false},
	} {
		if err := st.Put(context.Background(), archive.WALPath(tc.name, ".zst"), bytes.NewReader(tc.z)); err != nil {
			t.Fatal(err)
		}
		rc, _, err := archive.OpenWAL(context.Background(), st, tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if got := archive.TrustsSumFrame(rc); got != tc.trust {
			t.Errorf("%s: read by its sum frame alone: %v, want %v", tc.name, got, tc.trust)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, in) {
			t.Errorf("%s: %v, %d bytes", tc.name, err, len(got))
		}
	}
}
