package archive

import (
	"errors"
	"path"
	"path/filepath"
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
