package crypt

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/walship/walship/archive"
)

// KeysDir is the directory of the archive's key sets. Its files are never
// encrypted: writers, which hold no private key, read them.
const KeysDir = "encryption"

// keySetPrefix and keySetSuffix frame a key set's serial number:
// encryption/keys-000001.json. Serials are zero-padded so that names sort
// as numbers.
const (
	keySetPrefix = "keys-"
	keySetSuffix = ".json"
)

// KeySetFormat is the version of the key set file format.
const KeySetFormat = 1

// A KeySet is one file of KeysDir: the recipients that files are encrypted
// to from its creation on. Key sets are never changed or replaced (Put
// never replaces): a new key, or a key retired, is a new key set with the
// next serial, so the newest one is in force and the older ones are the
// history of which keys were used when.
type KeySet struct {
	Format     int       `json:"format"`
	Serial     int       `json:"serial"`
	Created    time.Time `json:"created"`
	Recipients []Key     `json:"recipients"`
}

// A Key is one recipient of a key set.
type Key struct {
	// Recipient is the age public key: age1… (X25519) or age1pq1…
	// (post-quantum hybrid).
	Recipient string `json:"recipient"`
	// Fingerprint is Fingerprint(Recipient), for people and messages.
	Fingerprint string `json:"fingerprint"`
	// Comment says what the key is for ("standby identity", "offline
	// escrow"); it is not secret and not checked.
	Comment string `json:"comment,omitempty"`
}

// Fingerprint returns the short name of a recipient: the first 16 hex
// digits of the SHA-256 of its text. It names a key in messages and in the
// headers of encrypted files without repeating the whole key.
func Fingerprint(recipient string) string {
	sum := sha256.Sum256([]byte(recipient))
	return hex.EncodeToString(sum[:8])
}

// ParseRecipient parses an age public key.
func ParseRecipient(s string) (age.Recipient, error) {
	s = strings.TrimSpace(s)
	rs, err := age.ParseRecipients(strings.NewReader(s))
	if err != nil || len(rs) != 1 {
		return nil, fmt.Errorf("%q is not an age public key (age1… or age1pq1…): generate one with walship encryption keygen", s)
	}
	return rs[0], nil
}

// recipients returns the parsed recipients of ks.
func (ks KeySet) recipients() ([]age.Recipient, error) {
	if len(ks.Recipients) == 0 {
		return nil, fmt.Errorf("key set %d has no recipients", ks.Serial)
	}
	var out []age.Recipient
	for _, k := range ks.Recipients {
		r, err := ParseRecipient(k.Recipient)
		if err != nil {
			return nil, fmt.Errorf("key set %d: %w", ks.Serial, err)
		}
		if Fingerprint(k.Recipient) != k.Fingerprint {
			return nil, fmt.Errorf("key set %d: the fingerprint of %s is %s, not %s", ks.Serial, k.Recipient, Fingerprint(k.Recipient), k.Fingerprint)
		}
		out = append(out, r)
	}
	return out, nil
}

// Fingerprints returns the fingerprints of ks's recipients, sorted.
func (ks KeySet) Fingerprints() []string {
	var fps []string
	for _, k := range ks.Recipients {
		fps = append(fps, k.Fingerprint)
	}
	slices.Sort(fps)
	return fps
}

func keySetPath(serial int) string {
	return fmt.Sprintf("%s/%s%06d%s", KeysDir, keySetPrefix, serial, keySetSuffix)
}

// ReadKeySets returns the archive's key sets, oldest first; an archive
// without encryption has none.
func ReadKeySets(ctx context.Context, st archive.Storage) ([]KeySet, error) {
	files, err := st.List(ctx, KeysDir)
	if err != nil {
		return nil, fmt.Errorf("list the archive's encryption keys: %w", err)
	}
	var sets []KeySet
	for _, f := range files {
		num, ok := strings.CutPrefix(f.Name, keySetPrefix)
		if num, ok = strings.CutSuffix(num, keySetSuffix); !ok {
			continue
		}
		serial, err := strconv.Atoi(num)
		if err != nil || serial <= 0 {
			continue
		}
		ks, err := readKeySet(ctx, st, KeysDir+"/"+f.Name)
		if err != nil {
			return nil, err
		}
		if ks.Serial != serial {
			return nil, fmt.Errorf("%s/%s is damaged: it says it is key set %d", KeysDir, f.Name, ks.Serial)
		}
		sets = append(sets, ks)
	}
	return sets, nil
}

func readKeySet(ctx context.Context, st archive.Storage, name string) (KeySet, error) {
	rc, err := st.Open(ctx, name)
	if err != nil {
		return KeySet{}, fmt.Errorf("read %s: %w", name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return KeySet{}, fmt.Errorf("read %s: %w", name, err)
	}
	var ks KeySet
	if err := json.Unmarshal(b, &ks); err != nil {
		return KeySet{}, fmt.Errorf("%s is damaged: %w", name, err)
	}
	if ks.Format > KeySetFormat {
		return KeySet{}, fmt.Errorf("%s has format %d, this walship understands up to %d: upgrade walship", name, ks.Format, KeySetFormat)
	}
	if _, err := ks.recipients(); err != nil {
		return KeySet{}, fmt.Errorf("%s is damaged: %w", name, err)
	}
	return ks, nil
}

// AddKeySet stores the next key set, with the given keys, and returns it.
// It fails with an error matching fs.ErrExist when another process added
// a key set at the same moment.
func AddKeySet(ctx context.Context, st archive.Storage, keys []Key, now time.Time) (KeySet, error) {
	sets, err := ReadKeySets(ctx, st)
	if err != nil {
		return KeySet{}, err
	}
	ks := KeySet{Format: KeySetFormat, Serial: 1, Created: now.UTC(), Recipients: keys}
	if len(sets) > 0 {
		ks.Serial = sets[len(sets)-1].Serial + 1
	}
	for i := range ks.Recipients {
		ks.Recipients[i].Recipient = strings.TrimSpace(ks.Recipients[i].Recipient)
		ks.Recipients[i].Fingerprint = Fingerprint(ks.Recipients[i].Recipient)
	}
	if _, err := ks.recipients(); err != nil {
		return KeySet{}, err
	}
	b, err := json.MarshalIndent(ks, "", "  ")
	if err != nil {
		return KeySet{}, err
	}
	if err := st.Put(ctx, keySetPath(ks.Serial), strings.NewReader(string(b)+"\n")); err != nil {
		return KeySet{}, fmt.Errorf("store key set %d: %w", ks.Serial, err)
	}
	return ks, nil
}

// Identities are the private keys a reader decrypts with, and where they
// came from, for messages.
type Identities struct {
	File string
	IDs  []age.Identity
	// Fingerprints are those of the identities' public keys.
	Fingerprints []string

	modTime time.Time // of File when read
	size    int64
}

// ErrIdentityFile is returned for an identity file that cannot be used.
var ErrIdentityFile = errors.New("encryption identity file unusable")

// LoadIdentities reads an age identity file (as age-keygen or walship
// encryption keygen writes it: one AGE-SECRET-KEY-… line per key, # for
// comments). The file must be readable by its owner only (mode 0600 or
// 0400): a private key that others can read is refused.
func LoadIdentities(path string) (Identities, error) {
	f, err := os.Open(path)
	if err != nil {
		return Identities{}, fmt.Errorf("%w: %w", ErrIdentityFile, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Identities{}, fmt.Errorf("%w: %w", ErrIdentityFile, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return Identities{}, fmt.Errorf("%w: %s has mode %04o, and a private key must be readable by its owner only: chmod 600 %s",
			ErrIdentityFile, path, fi.Mode().Perm(), path)
	}
	ids, err := age.ParseIdentities(bufio.NewReader(f))
	if err != nil {
		return Identities{}, fmt.Errorf("%w: %s: %v", ErrIdentityFile, path, err)
	}
	out := Identities{File: path, IDs: ids, modTime: fi.ModTime(), size: fi.Size()}
	for _, id := range ids {
		switch id := id.(type) {
		case *age.X25519Identity:
			out.Fingerprints = append(out.Fingerprints, Fingerprint(id.Recipient().String()))
		case *age.HybridIdentity:
			out.Fingerprints = append(out.Fingerprints, Fingerprint(id.Recipient().String()))
		}
	}
	return out, nil
}
