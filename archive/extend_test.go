package archive_test

import (
	"context"
	"errors"
	"testing"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/local"
)

// The wrappers walship stacks around a backend keep its optional
// interfaces, and Lazy says what it cannot do.
func TestWrappersKeepInterfaces(t *testing.T) {
	st, err := local.Open(local.Config{Root: t.TempDir(), FileMode: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	r := archive.Retry(st, archive.RetryPolicy{})
	if _, ok := r.(archive.Watcher); !ok {
		t.Errorf("Retry(local): not an archive.Watcher")
	}
	if m, ok := r.(archive.Moder); !ok || m.FileMode() != 0o600 {
		t.Errorf("Retry(local): not an archive.Moder of mode 0600")
	}
	tf, ok := r.(archive.TempFiles)
	if !ok {
		t.Fatalf("Retry(local): not an archive.TempFiles")
	}
	if files, err := tf.ListTemp(t.Context(), ""); err != nil || len(files) != 0 {
		t.Errorf("ListTemp: got %v, %v; want nothing", files, err)
	}

	l := archive.Lazy("lazy", func(context.Context) (archive.Storage, error) { return st, nil })
	if files, err := l.(archive.TempFiles).ListTemp(t.Context(), "wal"); err != nil || len(files) != 0 {
		t.Errorf("Lazy(local).ListTemp: got %v, %v; want nothing", files, err)
	}
	plain := archive.Lazy("plain", func(context.Context) (archive.Storage, error) { return struct{ archive.Storage }{st}, nil })
	if _, err := plain.(archive.TempFiles).ListTemp(t.Context(), ""); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Lazy of a backend without TempFiles: ListTemp got %v, want errors.ErrUnsupported", err)
	}
	if _, ok := archive.Retry(struct{ archive.Storage }{st}, archive.RetryPolicy{}).(archive.TempFiles); ok {
		t.Errorf("Retry of a backend without TempFiles: is one")
	}
}
