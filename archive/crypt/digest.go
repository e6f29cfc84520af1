package crypt

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Digests let a writer, which holds no private key and so cannot read back
// what it archived, tell an identical re-push from a different file under
// the same name. A digest is "x1-<salt>-<xxh64>-<size>": the XXH64 of a
// random 8-byte salt followed by the file's content (before compression,
// so that it does not depend on the compressor's version), and the size.
//
// It is in the clear in the file's header. It tells nothing of the
// content, except that it lets someone who can guess a file's whole
// content confirm the guess: possible for a short .history file, whose
// content (timeline switch points) is not secret, and not for WAL
// segments. It is no proof of who wrote a file: the header's MAC is keyed
// by the file's own key, which the writer chooses.
const digestVersion = "x1"

// NewDigest returns the digest of what r reads, with a new random salt.
func NewDigest(r io.Reader) (string, error) {
	salt := make([]byte, 8)
	rand.Read(salt)
	return digestWith(salt, r)
}

func digestWith(salt []byte, r io.Reader) (string, error) {
	h := xxhash.New()
	h.Write(salt)
	n, err := io.Copy(h, r)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s-%s-%016x-%d", digestVersion, hex.EncodeToString(salt), h.Sum64(), n), nil
}

// MatchDigest reports whether what r reads has the digest d.
func MatchDigest(d string, r io.Reader) (bool, error) {
	f := strings.Split(d, "-")
	if len(f) != 4 || f[0] != digestVersion {
		return false, fmt.Errorf("digest %q: not one this walship writes", d)
	}
	salt, err := hex.DecodeString(f[1])
	if err != nil || len(salt) != 8 {
		return false, fmt.Errorf("digest %q: bad salt", d)
	}
	if _, err := strconv.ParseInt(f[3], 10, 64); err != nil {
		return false, fmt.Errorf("digest %q: bad size", d)
	}
	got, err := digestWith(salt, r)
	if err != nil {
		return false, err
	}
	return got == d, nil
}
