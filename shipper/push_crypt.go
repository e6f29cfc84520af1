package shipper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/crypt"
	"github.com/walship/walship/wal"
)

// On an encrypted archive the primary holds only public keys: it cannot
// read back what it archived. So each WAL file it pushes carries a digest
// of its content in the clear header (crypt.NewDigest), and a re-push is
// compared against that digest, which also spares reading the archived
// copy at all. Checks that read other archived files (the parent
// timeline's history) are skipped without a key, and say so.

// digestFor returns the digest to record with the size bytes of f when
// the archive encrypts, and "" when it does not.
func (p *Pusher) digestFor(ctx context.Context, f *os.File, size int64) (string, error) {
	c, ok := crypt.Of(p.Storage)
	if !ok {
		return "", nil
	}
	if _, on, err := c.Active(ctx); err != nil || !on {
		return "", err
	}
	return crypt.NewDigest(io.NewSectionReader(f, 0, size))
}

// compareDigest compares f with the digest recorded in the header of the
// archived copy of n. It returns handled false when there is no digest to
// compare with (an archive that does not encrypt, a file archived before
// encryption), and the caller reads the archived copy instead.
func (p *Pusher) compareDigest(ctx context.Context, f *os.File, n wal.Name, size int64) (handled bool, err error) {
	c, ok := crypt.Of(p.Storage)
	if !ok {
		return false, nil
	}
	name := n.String()
	for _, suffix := range archive.WALSuffixes(name) {
		h, err := c.FileHeader(ctx, archive.WALPath(name, suffix))
		if archive.IsNotExist(err) {
			continue
		}
		if errors.Is(err, crypt.ErrNotEncrypted) || (err == nil && h.Digest == "") {
			return false, nil
		}
		if err != nil {
			return true, fmt.Errorf("push %s: compare with archived copy: %w", name, err)
		}
		same, err := crypt.MatchDigest(h.Digest, io.NewSectionReader(f, 0, size))
		if err != nil {
			return true, fmt.Errorf("push %s: compare with archived copy: %w", name, err)
		}
		if !same {
			return true, fmt.Errorf("push %s: %w (its digest differs); the archived file was left untouched: check that this archive (%s) is used by one cluster only",
				name, ErrConflict, p.Storage)
		}
		p.logger().Info("already archived with identical content", "file", name, "archive", p.Storage.String(), "compared", "digest")
		return true, nil
	}
	return false, nil
}

// noKey reports whether err says an archived file could not be read for
// want of a private key, which a primary on an encrypted archive does not
// have, and logs what is skipped for it.
func (p *Pusher) noKey(err error, what string) bool {
	if !errors.Is(err, crypt.ErrKey) {
		return false
	}
	p.logger().Debug("the archive is encrypted and walship has no identity: "+what+" skipped", "err", err)
	return true
}
