package archive

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

// tempInfix sits between a temporary file's final name and its random
// suffix, of tempRandom hex digits.
const (
	tempInfix  = ".tmp."
	tempRandom = 16
)

// TempName returns a new temporary name for a Put of the file named base:
// ".<base>.tmp.<16 random hex digits>". It is hidden, so List never shows
// it, and it goes in the final file's own directory, so that giving it its
// final name is a rename inside one directory. The random part keeps
// concurrent Puts, and the files of killed ones, from colliding.
func TempName(base string) string {
	var b [tempRandom / 2]byte
	rand.Read(b[:])
	return "." + base + tempInfix + hex.EncodeToString(b[:])
}

// IsTempName reports whether name, a base name, has the form TempName
// gives. Other hidden files (an NFS client's .nfs…, an editor's swap file)
// are not temporary files of walship, and TempFiles never touches them.
func IsTempName(name string) bool {
	n := len(name) - tempRandom - len(tempInfix)
	if n < 2 || name[0] != '.' || name[1] == '.' || name[n:n+len(tempInfix)] != tempInfix ||
		strings.ContainsAny(name, "/\\\x00") {
		return false
	}
	for _, c := range name[n+len(tempInfix):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// CollectTemp is TempFiles.ListTemp for backends to share: it walks dir and
// the directories below it with readDir, which lists one directory (an
// archive name, "" for the root) as os.ReadDir does, entries of symbolic
// links typed as links, and fails with an error matching fs.ErrNotExist for
// a directory that does not exist. A directory below dir that readDir may
// not read (fs.ErrPermission: the lost+found of a file system given to the
// archive) is skipped: no Put wrote into it.
func CollectTemp(ctx context.Context, dir string, readDir func(dir string) ([]fs.DirEntry, error)) ([]TempFile, error) {
	if dir != "" {
		if err := ValidName(dir); err != nil {
			return nil, err
		}
	}
	var files []TempFile
	top := dir
	var walk func(dir string) error
	walk = func(dir string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		entries, err := readDir(dir)
		if IsNotExist(err) || (dir != top && errors.Is(err, fs.ErrPermission)) {
			return nil // missing, removed since its parent was listed, or not ours
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := e.Name()
			switch {
			case e.IsDir():
				sub := name
				if dir != "" {
					sub = dir + "/" + name
				}
				if ValidName(sub) != nil {
					continue // hidden (.snapshot), or past the longest name
				}
				if err := walk(sub); err != nil {
					return err
				}
			case e.Type().IsRegular() && IsTempName(name):
				fi, err := e.Info()
				if IsNotExist(err) {
					continue // renamed, or removed, since the listing
				}
				if err != nil {
					return err
				}
				files = append(files, TempFile{Dir: dir,
					FileInfo: FileInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime(), Mode: fi.Mode().Perm()}})
			}
		}
		return nil
	}
	if err := walk(dir); err != nil {
		return nil, err
	}
	slices.SortFunc(files, func(a, b TempFile) int {
		if c := strings.Compare(a.Dir, b.Dir); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return files, nil
}

// CheckTempName checks the arguments of TempFiles.RemoveTemp, for backends
// to share.
func CheckTempName(dir, name string) error {
	if dir != "" {
		if err := ValidName(dir); err != nil {
			return err
		}
	}
	if !IsTempName(name) {
		return fmt.Errorf("%w: %q is not a temporary file's name", ErrInvalidName, name)
	}
	return nil
}
