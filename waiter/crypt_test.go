package waiter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/crypt"
)

// encryptArchive puts e's archive under encryption to a new key, and e's
// storage behind the encryption layer with that key.
func encryptArchive(t *testing.T, e *env) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ids, err := crypt.LoadIdentities(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := crypt.AddKeySet(context.Background(), e.st, []crypt.Key{{Recipient: id.Recipient().String()}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.st = crypt.New(e.st, crypt.Config{Identities: ids})
}

// flipStored flips a byte in the middle of the stored file name.
func flipStored(t *testing.T, e *env, name string) {
	t.Helper()
	p := filepath.Join(e.root, filepath.FromSlash(name))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(p, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// A flipped byte in an encrypted tail increment ends the tail before it:
// the increment is refused, never served.
func TestEncryptedTailIncrementTampered(t *testing.T) {
	seg := pagedSegment(t, sysID, 1, 20)
	e := newArchive(t)
	encryptArchive(t, e)
	e.putInc(name(20), seg, 0, 10000, archive.Zstd)
	e.putInc(name(20), seg, 10000, 20000, archive.Zstd)
	e.putInc(name(20), seg, 20000, 30000, archive.Zstd)
	flipStored(t, e, archive.TailDir(name(20))+"/00002710-00004E20.zst")
	if err := e.smartWaiter().Wait(context.Background(), name(20), e.dest); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	e.wantTail(seg, 10000)
}

// A flipped byte in an encrypted segment is bad WAL (exit 250), not "not
// found" and not a retry.
func TestEncryptedSegmentTampered(t *testing.T) {
	e := newArchive(t)
	encryptArchive(t, e)
	e.put(name(5), segment(t, sysID, 1, 5), archive.Zstd)
	flipStored(t, e, archive.WALPath(name(5), ".zst"))
	err := e.waiter().Wait(context.Background(), name(5), e.dest)
	if !errors.Is(err, ErrBadWAL) {
		t.Fatalf("Wait of a tampered encrypted segment: got %v, want ErrBadWAL", err)
	}
	if _, serr := os.Stat(e.dest); !os.IsNotExist(serr) {
		t.Errorf("a tampered segment left %s: %v", e.dest, serr)
	}
}
