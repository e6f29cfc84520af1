package shipper

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/walship/walship/archive"
)

// A FIFO under a WAL name is refused at once, not read until someone writes.
func TestPushFIFORefusedAtOnce(t *testing.T) {
	f := newFixture(t)
	p := filepath.Join(f.dir, segName(1, 1))
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.push(archive.Zstd, p, segName(1, 1)) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrBadFile) {
			t.Errorf("push of a FIFO: %v, want ErrBadFile", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("push of a FIFO hangs")
	}
}

// .history and .backup files name no cluster: the pushing server's
// pg_control must vouch for them, and their content must be what the name
// says.
func TestPushTextFilesChecked(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	seg := fakeSegment(t, testSysID, 1, 5, 1)
	if err := f.push(archive.Zstd, f.file(segName(1, 5), seg), segName(1, 5)); err != nil {
		t.Fatal(err)
	}
	hist2 := []byte("1\t0/5000060\tno recovery target specified\n")
	push := func(sysid uint64, name string, b []byte) error {
		p := &Pusher{Storage: f.st, Compression: archive.Zstd, SystemID: sysid}
		return p.Push(ctx, f.file(name, b), name)
	}
	for _, tc := range []struct {
		what  string
		sysid uint64
		name  string
		b     []byte
		want  error
	}{
		{"foreign server's history", testSysID + 1, "00000002.history", hist2, ErrForeignCluster},
		{"history from an unknown server", 0, "00000002.history", hist2, ErrUnknownCluster},
		{"history naming a later timeline", testSysID, "00000002.history", []byte("3\t0/5000060\tx\n"), ErrBadFile},
		{"history without entries", testSysID, "00000002.history", []byte("\n"), ErrBadFile},
		{"segment as .backup", testSysID, segName(1, 5) + ".00000028.backup", seg[:4096], ErrBadFile},
		{"foreign server's .backup", testSysID + 1, segName(1, 5) + ".00000028.backup", []byte("x"), ErrForeignCluster},
	} {
		if err := push(tc.sysid, tc.name, tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.what, err, tc.want)
		}
		if _, _, err := archive.StatWAL(ctx, f.st, tc.name); !archive.IsNotExist(err) {
			t.Errorf("%s: archived anyway (%v)", tc.what, err)
		}
	}
	if err := push(testSysID, "00000002.history", hist2); err != nil {
		t.Fatalf("own history: %v", err)
	}
	// Timeline 3's history must extend timeline 2's as archived.
	if err := push(testSysID, "00000003.history", []byte("1\t0/4000060\tx\n2\t0/6000060\tx\n")); !errors.Is(err, ErrForeignCluster) {
		t.Errorf("history contradicting its parent's: %v, want ErrForeignCluster", err)
	}
	if err := push(testSysID, "00000003.history", []byte("1\t0/5000060\tx\n2\t0/6000060\tx\n")); err != nil {
		t.Errorf("history extending its parent's: %v", err)
	}
}

// A raw copy left without its checksum file (a push killed between the two)
// gets one on the next, identical push.
func TestPushRepairsChecksum(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	seg := fakeSegment(t, testSysID, 1, 5, 1)
	name := segName(1, 5)
	if err := f.push(archive.None, f.file(name, seg), name); err != nil {
		t.Fatal(err)
	}
	if err := f.st.Remove(ctx, archive.ChecksumPath(name)); err != nil {
		t.Fatal(err)
	}
	if err := f.push(archive.None, f.file(name, seg), name); err != nil {
		t.Fatal(err)
	}
	rc, _, err := archive.OpenWAL(ctx, f.st, name)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if raw, ok := rc.(*archive.RawReader); !ok || !raw.Checked() {
		t.Errorf("after an identical re-push the raw copy still has no checksum file")
	}
	if _, err := os.Stat(filepath.Join(f.dir, name)); err != nil {
		t.Fatal(err)
	}
}
