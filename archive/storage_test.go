package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"walship.json", true},
		{"wal/000000010000000000000001", true},
		{"wal/000000010000000000000001.zst", true},
		{"wal/00000002.history", true},
		{"wal/000000010000000000000001.tail/0000000000000000-0000000000002000", true},
		{"backups/20240101T000000Z/base.tar.zst", true},
		{"a..b", true}, // an odd name, but one element that stays inside
		{"a b", true},
		{"", false},
		{"/abs", false},
		{"/", false},
		{".", false},
		{"..", false},
		{"../x", false},
		{"a/..", false},
		{"a/../b", false},
		{"a/./b", false},
		{"./a", false},
		{"a//b", false},
		{"a/", false},
		{".hidden", false},
		{"wal/.x.tmp.0123", false},
		{"a\\b", false},
		{"..\\x", false},
		{"a\x00b", false},
		{strings.Repeat("a", 1024), true},
		{strings.Repeat("a", 1025), false},
	}
	for _, tt := range tests {
		err := ValidName(tt.name)
		if tt.ok && err != nil {
			t.Errorf("ValidName(%q): got %v, want nil", tt.name, err)
		}
		if !tt.ok && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidName(%q): got %v, want ErrInvalidName", tt.name, err)
		}
	}
}

func FuzzValidName(f *testing.F) {
	for _, s := range []string{"walship.json", "wal/x.zst", "../x", "a/../b", "a//b", ".h", "a\\b", "/abs", "a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidName(name) != nil {
			return
		}
		for _, elem := range strings.Split(name, "/") {
			if elem == ".." || elem == "." || elem == "" {
				t.Fatalf("ValidName(%q): got nil, want an error for element %q", name, elem)
			}
		}
		if strings.HasPrefix(name, "/") || strings.ContainsAny(name, "\\\x00") {
			t.Fatalf("ValidName(%q): got nil, want an error", name)
		}
		if path.Clean(name) != name || !filepath.IsLocal(name) {
			t.Fatalf("ValidName(%q): got nil, but the name is not clean and local", name)
		}
		const root = "/srv/walship"
		joined := filepath.Join(root, name)
		if rel, err := filepath.Rel(root, joined); err != nil || !filepath.IsLocal(rel) || rel != name {
			t.Fatalf("ValidName(%q): got nil, but filepath.Join(%q, name) = %q leaves the root", name, root, joined)
		}
	})
}

func TestRegularFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("b", "bb")
	write("a", "a")
	write(".a.tmp.1", "in the making")
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"link-to-b": "b", "link-to-sub": "sub", "dangling": "gone"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files, err := RegularFiles(entries, func(name string) (fs.FileInfo, error) { return os.Stat(filepath.Join(dir, name)) })
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, fmt.Sprintf("%s:%d", f.Name, f.Size))
	}
	if want := []string{"a:1", "b:2", "link-to-b:2"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}

	boom := errors.New("stat failed")
	if _, err := RegularFiles(entries, func(string) (fs.FileInfo, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("a failing stat: got %v, want %v", err, boom)
	}
}
