package s3

import (
	"context"
	"fmt"
	"io"
)

// replaceKey marks the context of a Replace: its writes go without
// If-None-Match, since the key exists and is meant to be replaced.
type replaceKey struct{}

func isReplace(ctx context.Context) bool { return ctx.Value(replaceKey{}) != nil }

// Replace replaces the object name with the bytes of r; see
// archive.Replacer. An S3 PUT (or the completion of a multipart upload)
// replaces an object atomically: readers get the old object or the new,
// never none. A missing name returns an error matching fs.ErrNotExist.
func (s *Storage) Replace(ctx context.Context, name string, r io.Reader) error {
	if _, err := s.Stat(ctx, name); err != nil {
		return fmt.Errorf("replace %s: %w", s.name+"/"+name, err)
	}
	return s.Put(context.WithValue(ctx, replaceKey{}, true), name, r)
}
