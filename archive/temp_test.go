package archive

import (
	"context"
	"errors"
	"io/fs"
	"testing"
	"testing/fstest"
	"time"
)

// CollectTemp skips what it may not read below the directory it lists (a
// file system's lost+found), but not that directory itself, and stops at
// other errors.
func TestCollectTempErrors(t *testing.T) {
	const tmp = ".seg.tmp.0123456789abcdef"
	fsys := fstest.MapFS{
		"wal/" + tmp:                 {Data: []byte("x"), ModTime: time.Unix(1, 0)},
		"lost+found/x":               {},
		"backups/20261122T000000Z/y": {},
	}
	fail := map[string]error{}
	readDir := func(dir string) ([]fs.DirEntry, error) {
		if err := fail[dir]; err != nil {
			return nil, err
		}
		if dir == "" {
			dir = "."
		}
		return fs.ReadDir(fsys, dir)
	}
	ctx := context.Background()
	fail["lost+found"] = &fs.PathError{Op: "open", Path: "lost+found", Err: fs.ErrPermission}
	files, err := CollectTemp(ctx, "", readDir)
	if err != nil || len(files) != 1 || files[0].Path() != "wal/"+tmp || files[0].Size != 1 {
		t.Errorf("CollectTemp with lost+found unreadable: got %v, %v; want wal/%s", files, err, tmp)
	}
	fail["wal"] = fs.ErrPermission
	if _, err := CollectTemp(ctx, "wal", readDir); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("CollectTemp of an unreadable dir: got %v, want fs.ErrPermission", err)
	}
	fail["wal"] = nil
	errIO := errors.New("i/o error")
	fail["backups/20261122T000000Z"] = errIO
	if _, err := CollectTemp(ctx, "", readDir); !errors.Is(err, errIO) {
		t.Errorf("CollectTemp with a directory failing: got %v, want its error", err)
	}
	if files, err := CollectTemp(ctx, "no/such", readDir); err != nil || len(files) != 0 {
		t.Errorf("CollectTemp of a missing dir: got %v, %v; want nothing", files, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := CollectTemp(cctx, "", readDir); !errors.Is(err, context.Canceled) {
		t.Errorf("CollectTemp with ctx cancelled: got %v, want context.Canceled", err)
	}
}
