package local

import (
	"context"
	"errors"
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
	p := s.root
	if dir != "" {
		if err := archive.ValidName(dir); err != nil {
			return nil, err
		}
		p = s.path(dir)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
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
