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
	p := s.cfg.Path
	if dir != "" {
		if err := archive.ValidName(dir); err != nil {
			return nil, err
		}
		p = s.remote(dir)
	}
	c, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	var entries []os.FileInfo
	err = s.call(ctx, c, "list", p, func() (err error) { entries, err = c.sftp.ReadDirContext(ctx, p); return err })
	if archive.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
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
