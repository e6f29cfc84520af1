package archivetest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/walship/walship/archive"
)

// CheckLeftoverTemp checks ListTemp and RemoveTemp on temporary files as
// killed Puts leave them, and on hidden files that only look like them. It
// writes them with the os package into root, the local directory that s
// serves (a local archive's root, the directory an SFTP test server
// exports), so s must be an archive.TempFiles whose archive is empty.
func CheckLeftoverTemp(t *testing.T, s archive.Storage, root string) {
	t.Helper()
	tf, ok := s.(archive.TempFiles)
	if !ok {
		t.Fatalf("%T is not an archive.TempFiles", s)
	}
	ctx := t.Context()
	const rnd = "0123456789abcdef"
	old := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	type file struct {
		path string
		size int
	}
	temps := []file{ // sorted by directory, then name
		{".walship.json.tmp." + rnd, 10},
		{"backups/.20261122T000000Z.json.tmp." + rnd, 20},
		{"backups/20261122T000000Z/.base.tar.zst.tmp." + rnd, 30000},
		{"wal/.000000010000000000000003.zst.tmp." + rnd, 40},
		{"wal/.000000010000000000000003.zst.tmp.fedcba9876543210", 0},
		{"wal/000000010000000000000004.tail/.00000000-00002000.zst.tmp." + rnd, 50},
	}
	write := func(p string, size int) {
		t.Helper()
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(full, old, old); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range temps {
		write(f.path, f.size)
	}
	// Files that are not walship's temporary files, or not to be found.
	decoys := []string{
		"wal/000000010000000000000002.zst",                       // a regular file
		"wal/.nfs000000000123abcd00000001",                       // an NFS client's silly rename
		"wal/.000000010000000000000005.zst.tmp.0123",             // not 16 hex digits
		"wal/.000000010000000000000005.zst.tmp.0123456789ABCDEF", // not lower case
		"wal/.tmp." + rnd,                                        // no name
		".snapshot/wal/.x.tmp." + rnd,                            // in a hidden directory
	}
	for _, p := range decoys {
		write(p, 1)
	}
	// A directory outside the archive, reached only through a link.
	elsewhere := t.TempDir()
	linked := filepath.Join(elsewhere, ".000000010000000000000006.zst.tmp."+rnd)
	if err := os.WriteFile(linked, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(root, "wal", "linked")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "wal", "000000010000000000000002.zst"),
		filepath.Join(root, "wal", ".000000010000000000000007.zst.tmp."+rnd)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "wal", ".000000010000000000000008.zst.tmp."+rnd), 0o755); err != nil {
		t.Fatal(err)
	}

	got, err := tf.ListTemp(ctx, "")
	if err != nil {
		t.Fatalf("ListTemp(%q): got %v, want nil", "", err)
	}
	var paths []string
	for _, f := range got {
		paths = append(paths, f.Path())
	}
	var want []string
	for _, f := range temps {
		want = append(want, f.path)
	}
	if !slices.Equal(paths, want) {
		t.Fatalf("ListTemp(%q): got %q, want %q", "", paths, want)
	}
	for i, f := range got {
		if f.Size != int64(temps[i].size) || !f.ModTime.Equal(old) {
			t.Errorf("ListTemp: %s has %d bytes, modified %v; want %d bytes, modified %v", f.Path(), f.Size, f.ModTime, temps[i].size, old)
		}
	}
	got, err = tf.ListTemp(ctx, "wal")
	if err != nil || len(got) != 3 || got[2].Dir != "wal/000000010000000000000004.tail" {
		t.Errorf("ListTemp(%q): got %v, %v; want the 3 files under wal/", "wal", got, err)
	}
	if list, err := s.List(ctx, "wal"); err != nil || len(list) != 1 {
		t.Errorf("List(%q): got %v, %v; want the one regular file, no temporary one", "wal", list, err)
	}

	for _, f := range temps {
		dir, name := filepath.ToSlash(filepath.Dir(f.path)), filepath.Base(f.path)
		if dir == "." {
			dir = ""
		}
		if err := tf.RemoveTemp(ctx, dir, name); err != nil {
			t.Errorf("RemoveTemp(%q, %q): got %v, want nil", dir, name, err)
		}
		if _, err := os.Lstat(filepath.Join(root, filepath.FromSlash(f.path))); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after RemoveTemp: got %v, want it gone", f.path, err)
		}
	}
	if got, err := tf.ListTemp(ctx, ""); err != nil || len(got) != 0 {
		t.Errorf("ListTemp(%q) after removing them all: got %v, %v; want nothing", "", got, err)
	}
	for _, p := range append(decoys, "wal/.000000010000000000000007.zst.tmp."+rnd, "wal/.000000010000000000000008.zst.tmp."+rnd) {
		if _, err := os.Lstat(filepath.Join(root, filepath.FromSlash(p))); err != nil {
			t.Errorf("%s: got %v, want it left alone", p, err)
		}
	}
	if _, err := os.Lstat(linked); err != nil {
		t.Errorf("%s: got %v, want it left alone", linked, err)
	}
}
