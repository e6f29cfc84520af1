package archive_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/local"
)

// A repository lists the subdirectories that hold walship.json, through
// every wrapper, and Sub reads and writes inside one of them.
func TestRepository(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"main/wal", "reports/backups", "empty", ".hidden", "lost+found"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"main/walship.json", "reports/walship.json", ".hidden/walship.json", "loose.json"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(root, "main"), filepath.Join(root, "alias")); err != nil {
		t.Fatal(err)
	}
	st, err := local.New(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := []string{"alias", "main", "reports"}
	for name, s := range map[string]archive.Storage{
		"local": st,
		"retry": archive.Retry(st, archive.RetryPolicy{}),
		"lazy":  archive.Lazy(root, func(context.Context) (archive.Storage, error) { return st, nil }),
	} {
		got, err := archive.ListClusters(ctx, s)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: ListClusters = %v, %v; want %v", name, got, err, want)
		}
	}
	if _, err := archive.ListClusters(ctx, struct{ archive.Storage }{st}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("ListClusters of a backend without DirLister: %v, want errors.ErrUnsupported", err)
	}

	sub, err := archive.Sub(st, "reports")
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Put(ctx, "wal/x", strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "reports/wal/x")); err != nil {
		t.Errorf("Sub.Put did not write under the subdirectory: %v", err)
	}
	files, err := sub.List(ctx, "")
	if err != nil || len(files) != 1 || files[0].Name != archive.IdentityFile {
		t.Errorf("Sub.List(root) = %v, %v; want walship.json", files, err)
	}
	if _, err := sub.Open(ctx, "../main/walship.json"); !errors.Is(err, archive.ErrInvalidName) {
		t.Errorf("Sub.Open of a name that climbs out: %v, want ErrInvalidName", err)
	}
	if _, ok := sub.(archive.TempFiles); !ok {
		t.Errorf("Sub(local) is not a TempFiles")
	}
	if dirs, err := archive.ListDirs(ctx, sub, ""); err != nil || !slices.Equal(dirs, []string{"backups", "wal"}) {
		t.Errorf("Sub.ListDirs = %v, %v", dirs, err)
	}
	if _, err := archive.Sub(st, "../x"); !errors.Is(err, archive.ErrInvalidName) {
		t.Errorf("Sub(../x): %v, want ErrInvalidName", err)
	}
}
