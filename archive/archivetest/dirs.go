package archivetest

import (
	"context"
	"slices"
	"testing"

	"github.com/walship/walship/archive"
)

// testListDirs checks ListDirs of a backend that is an archive.DirLister:
// directories only, sorted, hidden and missing ones left out.
func testListDirs(t *testing.T, s archive.Storage) {
	d, ok := s.(archive.DirLister)
	if !ok {
		t.Skip("not an archive.DirLister")
	}
	ctx := context.Background()
	for _, name := range []string{"b/walship.json", "a/wal/x", "c", "a/y"} {
		mustPut(t, s, name, []byte(name))
	}
	for _, tc := range []struct {
		dir  string
		want []string
	}{{"", []string{"a", "b"}}, {"a", []string{"wal"}}, {"b", nil}, {"missing", nil}} {
		got, err := d.ListDirs(ctx, tc.dir)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ListDirs(%q) = %q, %v; want %q", tc.dir, got, err, tc.want)
		}
	}
	if _, err := d.ListDirs(ctx, "../x"); err == nil {
		t.Errorf("ListDirs(../x): no error")
	}
}
