package archive

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func compressWithSum(t testing.TB, in []byte) []byte {
	z, err := io.ReadAll(compressSummed(bytes.NewReader(in)))
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func TestSumFrameEndsWAL(t *testing.T) {
	for _, in := range [][]byte{nil, []byte("x"), compressible(3<<20+17, 1), incompressibleBytes(2 << 20)} {
		z := compressWithSum(t, in)
		c, ok := parseSumFrame(z[len(z)-sumFrameSize:])
		want, _ := ChecksumOf(bytes.NewReader(in))
		if !ok || c != want {
			t.Fatalf("%d bytes: the stream ends with %x (%v, %v), want the sum frame of %v", len(in), z[len(z)-sumFrameSize:], c, ok, want)
		}
		got, err := decodeBoth(t, z)
		if err != nil || !bytes.Equal(got, in) {
			t.Fatalf("%d bytes: FrameReader read %d bytes, %v", len(in), len(got), err)
		}
		// Other decoders skip it: zstd's own stream and whole-buffer decoders.
		d, err := zstd.NewReader(bytes.NewReader(z))
		if err != nil {
			t.Fatal(err)
		}
		viaStream, err := io.ReadAll(d)
		d.Close()
		if err != nil || !bytes.Equal(viaStream, in) {
			t.Errorf("%d bytes: zstd's stream decoder read %d bytes, %v", len(in), len(viaStream), err)
		}
	}
}

// frames splits a stream into its frames, the sum frame last.
func frames(t *testing.T, z []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(z) > 0 {
		var h zstd.Header
		if err := h.Decode(z); err != nil {
			t.Fatal(err)
		}
		n := h.HeaderSize + int(h.SkippableSize)
		if !h.Skippable {
			fr, _, err := readFrame(bufio.NewReader(bytes.NewReader(z)))
			if err != nil {
				t.Fatal(err)
			}
			n = len(*fr)
		}
		out = append(out, z[:n])
		z = z[n:]
	}
	return out
}

func TestSumFrameCatchesFrameOrder(t *testing.T) {
	in := compressible(3<<20, 3) // three frames
	fs := frames(t, compressWithSum(t, in))
	if len(fs) != 4 {
		t.Fatalf("%d frames, want 3 and the sum frame", len(fs))
	}
	otherSum := appendSumFrame(nil, Checksum{Sum: 1, Size: int64(len(in))})
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		z    []byte
	}{
		{"frames swapped", join(fs[1], fs[0], fs[2], fs[3])},
		{"frame dropped", join(fs[0], fs[2], fs[3])},
		{"frame repeated", join(fs[0], fs[1], fs[1], fs[2], fs[3])},
		{"other sum", join(fs[0], fs[1], fs[2], otherSum)},
		{"data after the sum frame", join(fs[0], fs[1], fs[2], fs[3], fs[2])},
		{"sum frame truncated", join(fs[0], fs[1], fs[2], fs[3][:sumFrameSize-3])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeBoth(t, tc.z); !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v, want ErrCorrupt", err)
			}
		})
	}
	// Without its sum frame the stream reads as before (older archives).
	if got, err := decodeBoth(t, join(fs[0], fs[1], fs[2])); err != nil || !bytes.Equal(got, in) {
		t.Errorf("without the sum frame: %d bytes, %v", len(got), err)
	}
	// Another tool's skippable frame with the same magic is skipped.
	foreign := binary.LittleEndian.AppendUint32(nil, sumMagic)
	foreign = binary.LittleEndian.AppendUint32(foreign, sumPayload)
	foreign = append(foreign, bytes.Repeat([]byte{'z'}, sumPayload)...)
	if got, err := decodeBoth(t, join(foreign, fs[0], fs[1], fs[2], fs[3])); err != nil || !bytes.Equal(got, in) {
		t.Errorf("with a foreign skippable frame: %d bytes, %v", len(got), err)
	}
}
