package crypt_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/archivetest"
	"github.com/walship/walship/archive/crypt"
	"github.com/walship/walship/archive/local"
)

// newKey returns a new identity, written to an identity file of mode 0600.
func newKey(t *testing.T) (*age.X25519Identity, string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.txt")
	if err := os.WriteFile(path, []byte("# a test key\n"+id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return id, path
}

func loadIDs(t *testing.T, paths ...string) crypt.Identities {
	t.Helper()
	var all crypt.Identities
	for _, p := range paths {
		ids, err := crypt.LoadIdentities(p)
		if err != nil {
			t.Fatal(err)
		}
		all.File = p
		all.IDs = append(all.IDs, ids.IDs...)
		all.Fingerprints = append(all.Fingerprints, ids.Fingerprints...)
	}
	return all
}

// encrypted returns a local archive with one key set of id's recipient,
// the storage below the encryption, and the encrypted storage.
func encrypted(t *testing.T, id *age.X25519Identity, cfg crypt.Config) (*local.Storage, *crypt.Storage) {
	t.Helper()
	raw, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := crypt.AddKeySet(t.Context(), raw, []crypt.Key{{Recipient: id.Recipient().String()}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	return raw, crypt.New(raw, cfg)
}

func TestConformance(t *testing.T) {
	id, path := newKey(t)
	archivetest.Run(t, func(t *testing.T) archive.Storage {
		_, st := encrypted(t, id, crypt.Config{Identities: loadIDs(t, path)})
		t.Cleanup(func() { st.Close() })
		return st
	})
}

func put(t *testing.T, st archive.Storage, name string, data []byte) {
	t.Helper()
	if err := st.Put(t.Context(), name, bytes.NewReader(data)); err != nil {
		t.Fatalf("Put(%s): %v", name, err)
	}
}

func read(st archive.Storage, name string) ([]byte, error) {
	rc, err := st.Open(context.Background(), name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestStoredEncryptedAndReadBack(t *testing.T) {
	id, path := newKey(t)
	raw, st := encrypted(t, id, crypt.Config{Identities: loadIDs(t, path)})
	data := bytes.Repeat([]byte("row 42, secret\n"), 20000)
	put(t, st, "wal/000000010000000000000001.zst", data)
	stored, err := read(raw, "wal/000000010000000000000001.zst")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stored, []byte("secret")) {
		t.Fatal("the stored file holds the plaintext")
	}
	if !strings.HasPrefix(string(stored), "age-encryption.org/v1\n") {
		t.Fatalf("the stored file is not an age file: %q", stored[:30])
	}
	// A standard age reader decrypts it with the identity alone.
	r, err := age.Decrypt(bytes.NewReader(stored), id)
	if err != nil {
		t.Fatalf("age.Decrypt: %v", err)
	}
	if got, _ := io.ReadAll(r); !bytes.Equal(got, data) {
		t.Fatal("age.Decrypt read other bytes")
	}
	got, err := read(st, "wal/000000010000000000000001.zst")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Open: got %d bytes, %v; want the %d bytes put", len(got), err, len(data))
	}
	// The catalog stays in the clear, for writers without a key.
	put(t, st, "walship.json", []byte(`{"format":1}`))
	put(t, st, "backups/20261202T000000Z.json", []byte(`{"id":"x"}`))
	for _, name := range []string{"walship.json", "backups/20261202T000000Z.json"} {
		if b, _ := read(raw, name); !bytes.HasPrefix(b, []byte("{")) {
			t.Errorf("%s is stored encrypted: %q", name, b)
		}
	}
	put(t, st, "backups/20261202T000000Z/backup_manifest.zst", []byte(`{"Files":[]}`))
	if b, _ := read(raw, "backups/20261202T000000Z/backup_manifest.zst"); bytes.HasPrefix(b, []byte("{")) {
		t.Error("a backup manifest is stored in the clear")
	}
}

func TestTamperingIsRefused(t *testing.T) {
	id, path := newKey(t)
	data := bytes.Repeat([]byte{7, 1, 2, 3}, 100000) // several 64 KiB chunks
	for _, tc := range []struct {
		name string
		edit func(b []byte) []byte
	}{
		{"a flipped byte in the body", func(b []byte) []byte { b[len(b)/2] ^= 1; return b }},
		{"a flipped byte in the last chunk", func(b []byte) []byte { b[len(b)-3] ^= 0x80; return b }},
		{"a flipped byte in the header", func(b []byte) []byte {
			i := bytes.Index(b, []byte("k="))
			b[i+2] ^= 1
			return b
		}},
		{"truncated", func(b []byte) []byte { return b[:len(b)-100] }},
		{"truncated at a chunk boundary", func(b []byte) []byte { return b[:len(b)-(len(data)%(64<<10))-16] }},
		{"extended", func(b []byte) []byte { return append(b, 0) }},
		{"replaced by plaintext", func([]byte) []byte { return data }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, st := encrypted(t, id, crypt.Config{Identities: loadIDs(t, path)})
			put(t, st, "wal/f", data)
			b, err := read(raw, "wal/f")
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(raw.String(), "wal", "f")
			if err := os.WriteFile(file, tc.edit(b), 0o640); err != nil {
				t.Fatal(err)
			}
			got, err := read(st, "wal/f")
			if !errors.Is(err, archive.ErrCorrupt) {
				t.Fatalf("read: got %d bytes and %v, want an error matching archive.ErrCorrupt", len(got), err)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	id, path := newKey(t)
	other, otherPath := newKey(t)
	_ = other
	raw, writer := encrypted(t, id, crypt.Config{}) // a primary: no identity
	put(t, writer, "wal/f", []byte("data"))

	// The writer cannot read back.
	if _, err := read(writer, "wal/f"); !errors.Is(err, crypt.ErrKey) || !strings.Contains(err.Error(), crypt.Fingerprint(id.Recipient().String())) {
		t.Errorf("read without identity: got %v, want ErrKey naming the key's fingerprint", err)
	}
	// A wrong key says which key the file needs and which one was given.
	wrong := crypt.New(raw, crypt.Config{Identities: loadIDs(t, otherPath)})
	_, err := read(wrong, "wal/f")
	if !errors.Is(err, crypt.ErrKey) || !strings.Contains(err.Error(), crypt.Fingerprint(id.Recipient().String())) ||
		!strings.Contains(err.Error(), crypt.Fingerprint(other.Recipient().String())) {
		t.Errorf("read with a wrong identity: got %v, want ErrKey naming both fingerprints", err)
	}
	if errors.Is(err, archive.ErrCorrupt) || archive.IsNotExist(err) {
		t.Errorf("a wrong key reads as corruption or absence: %v", err)
	}
	right := crypt.New(raw, crypt.Config{Identities: loadIDs(t, otherPath, path)})
	if b, err := read(right, "wal/f"); err != nil || string(b) != "data" {
		t.Errorf("read with both identities: got %q, %v", b, err)
	}
}

func TestRotation(t *testing.T) {
	oldID, oldPath := newKey(t)
	newID, newPath := newKey(t)
	raw, writer := encrypted(t, oldID, crypt.Config{Reload: time.Nanosecond})
	put(t, writer, "wal/old", []byte("old"))
	ks, err := crypt.AddKeySet(t.Context(), raw, []crypt.Key{{Recipient: newID.Recipient().String()}}, time.Now())
	if err != nil || ks.Serial != 2 {
		t.Fatalf("AddKeySet: got %+v, %v; want key set 2", ks, err)
	}
	put(t, writer, "wal/new", []byte("new")) // the same writer, after the rotation
	oldOnly := crypt.New(raw, crypt.Config{Identities: loadIDs(t, oldPath)})
	newOnly := crypt.New(raw, crypt.Config{Identities: loadIDs(t, newPath)})
	if _, err := read(oldOnly, "wal/old"); err != nil {
		t.Errorf("old file, old key: %v", err)
	}
	if _, err := read(newOnly, "wal/new"); err != nil {
		t.Errorf("new file, new key: %v", err)
	}
	if _, err := read(oldOnly, "wal/new"); !errors.Is(err, crypt.ErrKey) {
		t.Errorf("new file, old key: got %v, want ErrKey: the writer kept the retired key", err)
	}
	// Re-encrypting the old file makes it readable with the new key alone.
	both := crypt.New(raw, crypt.Config{Identities: loadIDs(t, oldPath, newPath)})
	h, _ := both.FileHeader(t.Context(), "wal/old")
	active, _, _ := both.Active(t.Context())
	if !crypt.Needs(h.Keys, active) {
		t.Fatalf("the old file (keys %v) does not need rewrap to %v", h.Keys, active.Fingerprints())
	}
	rc, err := both.Open(t.Context(), "wal/old")
	if err != nil {
		t.Fatal(err)
	}
	if err := both.Rewrap(t.Context(), "wal/old", rc, ""); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if b, err := read(newOnly, "wal/old"); err != nil || string(b) != "old" {
		t.Errorf("rewrapped file, new key: got %q, %v", b, err)
	}
	if h, _ := both.FileHeader(t.Context(), "wal/old"); crypt.Needs(h.Keys, active) {
		t.Errorf("after rewrap the file still needs %v", h.Keys)
	}
}

func TestRemovedKeySets(t *testing.T) {
	id, path := newKey(t)
	raw, writer := encrypted(t, id, crypt.Config{Reload: time.Nanosecond})
	put(t, writer, "wal/a", []byte("a"))
	if err := os.RemoveAll(filepath.Join(raw.String(), crypt.KeysDir)); err != nil {
		t.Fatal(err)
	}
	// A writer that saw the keys does not fall back to plaintext.
	if err := writer.Put(t.Context(), "wal/b", strings.NewReader("b")); !errors.Is(err, crypt.ErrNotEncrypted) {
		t.Errorf("Put after the key sets vanished: got %v, want ErrNotEncrypted", err)
	}
	// Nor does one told to require encryption, nor a reader with a key.
	for _, cfg := range []crypt.Config{{Require: true}, {Identities: loadIDs(t, path)}} {
		st := crypt.New(raw, cfg)
		if err := st.Put(t.Context(), "wal/c", strings.NewReader("c")); !errors.Is(err, crypt.ErrNotEncrypted) {
			t.Errorf("Put with %+v and no key sets: got %v, want ErrNotEncrypted", cfg.Require, err)
		}
	}
	if _, err := raw.Stat(t.Context(), "wal/c"); !archive.IsNotExist(err) {
		t.Errorf("a refused Put left wal/c: %v", err)
	}
	// Without either, an archive without keys is a plain archive.
	plain := crypt.New(raw, crypt.Config{})
	put(t, plain, "wal/d", []byte("d"))
	if b, _ := read(raw, "wal/d"); string(b) != "d" {
		t.Errorf("plain archive: stored %q", b)
	}
}

func TestIdentityFileMode(t *testing.T) {
	_, path := newKey(t)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := crypt.LoadIdentities(path)
	if !errors.Is(err, crypt.ErrIdentityFile) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("identity file of mode 0644: got %v, want ErrIdentityFile saying chmod 600", err)
	}
	junk := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(junk, []byte("AGE-SECRET-KEY-1NOTAKEY\n"), 0o600)
	if _, err := crypt.LoadIdentities(junk); !errors.Is(err, crypt.ErrIdentityFile) || strings.Contains(err.Error(), "NOTAKEY") {
		t.Errorf("junk identity file: got %v, want ErrIdentityFile that does not repeat the key", err)
	}
}

func TestDigest(t *testing.T) {
	data := bytes.Repeat([]byte("wal"), 1000)
	d, err := crypt.NewDigest(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := crypt.MatchDigest(d, bytes.NewReader(data)); !ok || err != nil {
		t.Errorf("MatchDigest of the same content: %v, %v", ok, err)
	}
	other := append(bytes.Clone(data[:len(data)-1]), 'X')
	if ok, _ := crypt.MatchDigest(d, bytes.NewReader(other)); ok {
		t.Error("MatchDigest of other content: true")
	}
	if d2, _ := crypt.NewDigest(bytes.NewReader(data)); d2 == d {
		t.Error("two digests of one content are equal: the salt is not random")
	}
	id, _ := newKey(t)
	raw, st := encrypted(t, id, crypt.Config{})
	if err := st.PutDigest(t.Context(), "wal/x", bytes.NewReader([]byte("compressed")), d); err != nil {
		t.Fatal(err)
	}
	h, err := st.FileHeader(t.Context(), "wal/x")
	if err != nil || h.Digest != d || len(h.Keys) != 1 || h.Keys[0] != crypt.Fingerprint(id.Recipient().String()) {
		t.Errorf("FileHeader: got %+v, %v; want digest %s and the key", h, err, d)
	}
	put(t, raw, "wal/plain", []byte("x"))
	if _, err := st.FileHeader(t.Context(), "wal/plain"); !errors.Is(err, crypt.ErrNotEncrypted) {
		t.Errorf("FileHeader of a plain file: got %v, want ErrNotEncrypted", err)
	}
}

func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("age-encryption.org/v1\n-> walship v1 k=00,11 d=x1-0011223344556677-0011223344556677-5\n\n--- abc\n"))
	f.Add([]byte("age-encryption.org/v1\n-> X25519 abc\nbody\n--- mac"))
	f.Add([]byte("not age"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := crypt.ReadHeader(bufio.NewReader(bytes.NewReader(b)))
		if err == nil && !bytes.HasPrefix(b, []byte("age-encryption.org/v1\n")) {
			t.Fatalf("a header without the age magic parsed: %+v", h)
		}
		if h.Digest != "" {
			crypt.MatchDigest(h.Digest, bytes.NewReader(b)) // must not panic
		}
	})
}

func TestPlain(t *testing.T) {
	for name, want := range map[string]bool{
		"walship.json":                                                        true,
		"encryption/keys-000001.json":                                         true,
		"backups/20261202T000000Z.json":                                       true,
		"backups/20261202T000000Z.started":                                    true,
		"backups/20261202T000000Z/inprogress-000001.json":                     true,
		"backups/20261202T000000Z/base.tar.zst":                               false,
		"backups/20261202T000000Z/backup_manifest":                            false,
		"backups/a/b/inprogress-000001.json":                                  false,
		"wal/000000010000000000000001.zst":                                    false,
		"wal/00000002.history":                                                false,
		"wal/000000010000000000000001.tail/0000000000000000-0000000000002000": false,
		"alpha/walship.json":                                                  false,
	} {
		if got := crypt.Plain(name); got != want {
			t.Errorf("Plain(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestIdentityFileReloaded: a reader that started before its identity
// file got a new key (a rotation while wait waits) reads a file of the
// new key once the file has it.
func TestIdentityFileReloaded(t *testing.T) {
	oldID, oldPath := newKey(t)
	newID, _ := newKey(t)
	raw, _ := encrypted(t, oldID, crypt.Config{})
	reader := crypt.New(raw, crypt.Config{Identities: loadIDs(t, oldPath)})
	if _, err := crypt.AddKeySet(t.Context(), raw, []crypt.Key{{Recipient: newID.Recipient().String()}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	put(t, crypt.New(raw, crypt.Config{}), "wal/new", []byte("new"))
	if _, err := read(reader, "wal/new"); !errors.Is(err, crypt.ErrKey) {
		t.Fatalf("before the identity file has the new key: got %v, want ErrKey", err)
	}
	f, err := os.OpenFile(oldPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(newID.String() + "\n")
	f.Close()
	if b, err := read(reader, "wal/new"); err != nil || string(b) != "new" {
		t.Errorf("after the new key was added to the identity file: got %q, %v", b, err)
	}
}

// A segment pushed as S2 into an encrypted archive is stored encrypted and
// read back whole, its sum chunk checked through the decryption.
func TestS2Encrypted(t *testing.T) {
	id, path := newKey(t)
	raw, st := encrypted(t, id, crypt.Config{Identities: loadIDs(t, path)})
	name := "000000010000000000000003"
	data := bytes.Repeat([]byte("row 43, secret\n"), 100000)
	if err := archive.PutWAL(t.Context(), st, name, bytes.NewReader(data), archive.S2); err != nil {
		t.Fatal(err)
	}
	stored, err := read(raw, archive.WALPath(name, ".s2"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(stored), "age-encryption.org/v1\n") {
		t.Fatalf("the .s2 file is not stored encrypted: %q", stored[:30])
	}
	rc, _, err := archive.OpenWAL(t.Context(), st, name)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("OpenWAL: %d bytes, %v; want the %d bytes pushed", len(got), err, len(data))
	}
	want, _ := archive.ChecksumOf(bytes.NewReader(data))
	if c, err := archive.WALChecksum(t.Context(), st, name); err != nil || c != want {
		t.Errorf("WALChecksum: %+v, %v; want %+v", c, err, want)
	}
}
