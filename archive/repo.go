package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// A repository is a root that holds several clusters' archives side by
// side, as pgBackRest's stanzas: <repo>/<cluster>/walship.json,
// <repo>/<cluster>/wal/…, <repo>/<cluster>/backups/…. A cluster archive is
// a direct subdirectory of the root that holds walship.json, and the
// subdirectory's name is the cluster's name. Sub turns the root's Storage
// into each cluster's, so one connection serves them all.

// DirLister is implemented by backends that can list the directories
// inside a directory, which a repository of several clusters needs to find
// them. It is optional: a backend without it serves single archives only
// (walship info --repo and walship exporter --repo then say so). The local
// and SFTP backends implement it; Retry and Lazy pass it on.
type DirLister interface {
	// ListDirs returns the names of the directories directly inside dir
	// ("" is the root), sorted. Names starting with "." are left out, as
	// are entries that are not directories; a symbolic link to a directory
	// counts as one. A missing dir is an empty list, not an error.
	ListDirs(ctx context.Context, dir string) ([]string, error)
}

// ListDirs lists the directories inside dir of st; see DirLister. A
// backend that cannot list directories returns an error matching
// errors.ErrUnsupported.
func ListDirs(ctx context.Context, st Storage, dir string) ([]string, error) {
	d, ok := st.(DirLister)
	if !ok {
		return nil, fmt.Errorf("archive %s cannot list directories, which a repository of several clusters needs: %w",
			st, errors.ErrUnsupported)
	}
	return d.ListDirs(ctx, dir)
}

// ListClusters returns the names of the cluster archives in the
// repository st: its direct subdirectories that hold walship.json, sorted.
// Other directories (empty ones, a lost+found) are left out.
func ListClusters(ctx context.Context, st Storage) ([]string, error) {
	dirs, err := ListDirs(ctx, st, "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range dirs {
		if ValidName(d) != nil || d == WALDir || d == BackupsDir {
			continue // the root is itself a cluster archive; its own parts are no clusters
		}
		_, err := st.Stat(ctx, d+"/"+IdentityFile)
		switch {
		case err == nil:
			out = append(out, d)
		case IsNotExist(err):
		default:
			return nil, fmt.Errorf("repository %s: cluster %s: %w", st, d, err)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Sub returns the Storage of the directory dir inside st: every name it is
// given is taken relative to dir. Close does nothing, so that many Subs
// share st, which the caller closes. The result is a TempFiles and a
// DirLister when st is one.
func Sub(st Storage, dir string) (Storage, error) {
	if err := ValidName(dir); err != nil {
		return nil, err
	}
	s := &sub{st: st, dir: dir}
	_, tf := st.(TempFiles)
	_, dl := st.(DirLister)
	switch {
	case tf && dl:
		return struct {
			Storage
			TempFiles
			DirLister
		}{s, subTemp{s}, subDirs{s}}, nil
	case tf:
		return struct {
			Storage
			TempFiles
		}{s, subTemp{s}}, nil
	case dl:
		return struct {
			Storage
			DirLister
		}{s, subDirs{s}}, nil
	}
	return s, nil
}

type sub struct {
	st  Storage
	dir string
}

// name returns where name of the sub is in st, after checking it as st
// would: a name that climbs out is rejected here.
func (s *sub) name(name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	return s.dir + "/" + name, nil
}

func (s *sub) dirName(dir string) (string, error) {
	if dir == "" {
		return s.dir, nil
	}
	return s.name(dir)
}

func (s *sub) Put(ctx context.Context, name string, r io.Reader) error {
	n, err := s.name(name)
	if err != nil {
		return err
	}
	return s.st.Put(ctx, n, r)
}

func (s *sub) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	n, err := s.name(name)
	if err != nil {
		return nil, err
	}
	return s.st.Open(ctx, n)
}

func (s *sub) Stat(ctx context.Context, name string) (FileInfo, error) {
	n, err := s.name(name)
	if err != nil {
		return FileInfo{}, err
	}
	return s.st.Stat(ctx, n)
}

func (s *sub) List(ctx context.Context, dir string) ([]FileInfo, error) {
	d, err := s.dirName(dir)
	if err != nil {
		return nil, err
	}
	return s.st.List(ctx, d)
}

func (s *sub) Remove(ctx context.Context, name string) error {
	n, err := s.name(name)
	if err != nil {
		return err
	}
	return s.st.Remove(ctx, n)
}

func (s *sub) String() string {
	return strings.TrimSuffix(s.st.String(), "/") + "/" + s.dir
}

func (s *sub) Close() error { return nil }

type subTemp struct{ s *sub }

func (t subTemp) ListTemp(ctx context.Context, dir string) ([]TempFile, error) {
	d, err := t.s.dirName(dir)
	if err != nil {
		return nil, err
	}
	files, err := t.s.st.(TempFiles).ListTemp(ctx, d)
	if err != nil {
		return nil, err
	}
	for i := range files {
		rel := strings.TrimPrefix(files[i].Dir, t.s.dir)
		files[i].Dir = strings.TrimPrefix(rel, "/")
	}
	return files, nil
}

func (t subTemp) RemoveTemp(ctx context.Context, dir, name string) error {
	d, err := t.s.dirName(dir)
	if err != nil {
		return err
	}
	return t.s.st.(TempFiles).RemoveTemp(ctx, d, name)
}

type subDirs struct{ s *sub }

func (d subDirs) ListDirs(ctx context.Context, dir string) ([]string, error) {
	n, err := d.s.dirName(dir)
	if err != nil {
		return nil, err
	}
	return d.s.st.(DirLister).ListDirs(ctx, n)
}

// Dirs turns a directory listing into what DirLister.ListDirs returns, for
// backends to share: hidden names left out, symbolic links followed with
// stat, anything but a directory dropped, sorted by name.
func Dirs(entries []DirEntry, stat func(name string) (isDir bool, err error)) ([]string, error) {
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name, ".") {
			continue
		}
		isDir := e.IsDir
		if e.Symlink {
			var err error
			isDir, err = stat(e.Name)
			if IsNotExist(err) {
				continue
			}
			if err != nil {
				return nil, err
			}
		}
		if isDir {
			out = append(out, e.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// DirEntry is one entry of a directory listing, for Dirs.
type DirEntry struct {
	Name    string
	IsDir   bool
	Symlink bool
}
