// Package crypt encrypts an archive at rest with age (filippo.io/age):
// a Storage wrapper that encrypts every file it stores to the recipients
// (public keys) of the archive's newest key set, and decrypts and
// authenticates every file it opens with the identities (private keys) it
// is given.
//
// Public-key encryption keeps the private key off the primary: push,
// tail and backup need only the public keys, which the archive holds in
// encryption/keys-NNNNNN.json, so a compromised primary cannot read the
// archive's history. Key sets are added, never changed: a new key is a new
// key set, and files keep the key they were written with until rewrapped,
// so a rotation re-uploads nothing.
//
// Files are standard age files (compressed first, then encrypted), with
// one stanza of walship's own in the header naming the fingerprints of the
// keys a file needs and, for WAL, a digest of its content, so that a push
// can tell an identical re-push from a conflicting one without a private
// key. The age tool decrypts them as they are: age -d -i KEY FILE | zstd -d.
package crypt
