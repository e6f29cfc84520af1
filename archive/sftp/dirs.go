package sftp

import (
	"context"
	"os"
	"path"

	"github.com/walship/walship/archive"
)

var _ archive.DirLister = (*Storage)(nil)

// ListDirs returns the directories inside dir; see archive.DirLister. It
// lists dir in one request sequence, as List does.
func (s *Storage) ListDirs(ctx context.Context, dir string) ([]string, error) {
	c, p, entries, err := s.readDir(ctx, dir)
	if err != nil || entries == nil {
		return nil, err
	}
	des := make([]archive.DirEntry, len(entries))
	for i, fi := range entries {
		des[i] = archive.DirEntry{Name: fi.Name(), IsDir: fi.IsDir(), Symlink: fi.Mode()&os.ModeSymlink != 0}
	}
	return archive.Dirs(des, func(name string) (bool, error) {
		fi, err := s.stat(ctx, c, path.Join(p, name))
		return err == nil && fi.IsDir(), err
	})
}
