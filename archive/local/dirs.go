package local

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/walship/walship/archive"
)

var _ archive.DirLister = (*Storage)(nil)

// ListDirs returns the directories inside dir; see archive.DirLister. A
// repository of several clusters is a root whose subdirectories are
// cluster archives.
func (s *Storage) ListDirs(ctx context.Context, dir string) ([]string, error) {
	p, entries, err := s.readDir(ctx, dir)
	if err != nil || entries == nil {
		return nil, err
	}
	des := make([]archive.DirEntry, len(entries))
	for i, e := range entries {
		des[i] = archive.DirEntry{Name: e.Name(), IsDir: e.IsDir(), Symlink: e.Type()&fs.ModeSymlink != 0}
	}
	return archive.Dirs(des, func(name string) (bool, error) {
		fi, err := os.Stat(filepath.Join(p, name))
		return err == nil && fi.IsDir(), err
	})
}
