// Package archivetest is the conformance suite for archive.Storage: every
// backend's tests call Run, so the contract written on the interface is the
// contract every backend keeps.
package archivetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walship/walship/archive"
)

// Run checks a backend against the archive.Storage contract. newStorage
// returns an empty archive for each subtest, and arranges its Close and
// removal with t.Cleanup. If the Storage is also an archive.Watcher, Watch is
// tested too; if it is an archive.Moder, the modes of the files Put stores;
// if it is an archive.TempFiles, ListTemp and RemoveTemp; if it is an
// archive.DirLister, ListDirs.
func Run(t *testing.T, newStorage func(t *testing.T) archive.Storage) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s archive.Storage)
	}{
		{"MissingFile", testMissingFile},
		{"PutOpen", testPutOpen},
		{"PutExisting", testPutExisting},
		{"ConcurrentPut", testConcurrentPut},
		{"ConcurrentPutNewDir", testConcurrentPutNewDir},
		{"ReaderFails", testReaderFails},
		{"InProgressHidden", testInProgressHidden},
		{"CancelledBefore", testCancelledBefore},
		{"CancelledDuring", testCancelledDuring},
		{"NestedNames", testNestedNames},
		{"List", testList},
		{"Remove", testRemove},
		{"InvalidNames", testInvalidNames},
		{"Stat", testStat},
		{"Watch", testWatch},
		{"FileMode", testFileMode},
		{"TempFiles", testTempFiles},
		{"ListDirs", testListDirs},
		{"Replace", testReplace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStorage(t)) })
	}
}

func testMissingFile(t *testing.T, s archive.Storage) {
	ctx := t.Context()
	for _, name := range []string{"missing", "wal/missing", "no/such/dir/file"} {
		if r, err := s.Open(ctx, name); !errors.Is(err, fs.ErrNotExist) {
			if err == nil {
				r.Close()
			}
			t.Errorf("Open(%q): got %v, want an error matching fs.ErrNotExist", name, err)
		}
		if _, err := s.Stat(ctx, name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%q): got %v, want an error matching fs.ErrNotExist", name, err)
		}
		if err := s.Remove(ctx, name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Remove(%q): got %v, want an error matching fs.ErrNotExist", name, err)
		}
	}
}

func testPutOpen(t *testing.T, s archive.Storage) {
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"small", []byte("hello, archive\n")},
		{"empty", []byte{}},
		{"wal/random-5MiB", randomBytes(1, 5<<20)},
	} {
		if err := s.Put(t.Context(), tt.name, bytes.NewReader(tt.data)); err != nil {
			t.Fatalf("Put(%q): got %v, want nil", tt.name, err)
		}
		checkContent(t, s, tt.name, tt.data)
	}
}

func testPutExisting(t *testing.T, s archive.Storage) {
	ctx := t.Context()
	orig := []byte("original")
	mustPut(t, s, "wal/seg", orig)
	for _, data := range [][]byte{[]byte("different content"), orig, {}} {
		err := s.Put(ctx, "wal/seg", bytes.NewReader(data))
		if !errors.Is(err, fs.ErrExist) {
			t.Errorf("Put(%q) over an existing file with %q: got %v, want an error matching fs.ErrExist", "wal/seg", data, err)
		}
	}
	checkContent(t, s, "wal/seg", orig)
	checkList(t, s, "wal", "seg")
}

// testConcurrentPut races Puts of one name, as two walship processes pushing
// the same segment do: exactly one wins, and the stored file is all its.
func testConcurrentPut(t *testing.T, s archive.Storage) {
	const n = 8
	contents := make([][]byte, n)
	for i := range contents {
		contents[i] = randomBytes(uint64(i+10), 256<<10)
	}
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.Put(t.Context(), "wal/race", bytes.NewReader(contents[i]))
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("Put %d and Put %d both succeeded, want exactly one", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("Put %d: got %v, want nil or an error matching fs.ErrExist", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no Put succeeded, want exactly one")
	}
	checkContent(t, s, "wal/race", contents[winner])
	checkList(t, s, "wal", "race")
}

// testConcurrentPutNewDir races Puts of different names into a directory
// that does not exist yet, so each creates it.
func testConcurrentPutNewDir(t *testing.T, s archive.Storage) {
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Put(t.Context(), fmt.Sprintf("new/dir/f%d", i), bytes.NewReader([]byte{byte(i)}))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Put %d: got %v, want nil", i, err)
		}
	}
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("f%d", i))
		checkContent(t, s, fmt.Sprintf("new/dir/f%d", i), []byte{byte(i)})
	}
	checkList(t, s, "new/dir", want...)
}

var errReader = errors.New("archivetest: reader failed")

func testReaderFails(t *testing.T, s archive.Storage) {
	r := io.MultiReader(bytes.NewReader(randomBytes(2, 1<<20)), &failingReader{errReader})
	err := s.Put(t.Context(), "wal/seg", r)
	if !errors.Is(err, errReader) {
		t.Errorf("Put from a failing reader: got %v, want an error wrapping the reader's", err)
	}
	checkMissing(t, s, "wal/seg")
	checkList(t, s, "wal")

	// Nothing left behind blocks the retry.
	mustPut(t, s, "wal/seg", []byte("retry"))
	checkContent(t, s, "wal/seg", []byte("retry"))
}

// testInProgressHidden checks that a Put in progress is invisible: readers
// never see a half-written file under a final name.
func testInProgressHidden(t *testing.T, s archive.Storage) {
	mustPut(t, s, "wal/other", []byte("x"))
	r := &stallingReader{data: randomBytes(3, 64<<10), stalled: make(chan struct{}), release: make(chan error)}
	done := make(chan error, 1)
	go func() { done <- s.Put(t.Context(), "wal/seg", r) }()
	select {
	case <-r.stalled:
	case err := <-done:
		t.Fatalf("Put returned %v before reading all its input", err)
	}
	checkMissing(t, s, "wal/seg")
	checkList(t, s, "wal", "other")

	r.release <- errReader
	if err := <-done; !errors.Is(err, errReader) {
		t.Errorf("Put from a failing reader: got %v, want an error wrapping the reader's", err)
	}
	checkMissing(t, s, "wal/seg")
	checkList(t, s, "wal", "other")
}

func testCancelledBefore(t *testing.T, s archive.Storage) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.Put(ctx, "wal/seg", bytes.NewReader([]byte("data")))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled ctx: got %v, want an error matching context.Canceled", err)
	}
	checkMissing(t, s, "wal/seg")
	checkList(t, s, "wal")
}

// testCancelledDuring cancels ctx while Put is reading a large input that
// keeps coming: Put must notice and store nothing.
func testCancelledDuring(t *testing.T, s archive.Storage) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r := &cancellingReader{cancel: cancel, remaining: 64 << 20}
	err := s.Put(ctx, "wal/seg", r)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Put with ctx cancelled while reading: got %v, want an error matching context.Canceled", err)
	}
	checkMissing(t, s, "wal/seg")
	checkList(t, s, "wal")
}

func testNestedNames(t *testing.T, s archive.Storage) {
	mustPut(t, s, "wal/x/y", []byte("nested"))
	mustPut(t, s, "a/b/c/d/e", []byte("deep"))
	checkContent(t, s, "wal/x/y", []byte("nested"))
	checkContent(t, s, "a/b/c/d/e", []byte("deep"))
	checkList(t, s, "wal/x", "y")
	checkList(t, s, "wal") // x is a directory, not a file
	checkList(t, s, "a/b/c/d", "e")
	checkList(t, s, "")
}

func testList(t *testing.T, s archive.Storage) {
	ctx := t.Context()
	mustPut(t, s, "top", []byte("t"))
	for _, name := range []string{"d/b", "d/c", "d/a", "d/sub/z"} {
		mustPut(t, s, name, []byte(name)) // sizes 3, 3, 3, 7
	}
	mustPut(t, s, "d/long", make([]byte, 1000))
	got, err := s.List(ctx, "d")
	if err != nil {
		t.Fatalf("List(%q): got %v, want nil", "d", err)
	}
	want := []archive.FileInfo{{Name: "a", Size: 3}, {Name: "b", Size: 3}, {Name: "c", Size: 3}, {Name: "long", Size: 1000}}
	if len(got) != len(want) {
		t.Fatalf("List(%q): got %v, want %v", "d", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || !sizeOK(s, got[i].Size, want[i].Size) {
			t.Errorf("List(%q)[%d]: got %s (%d bytes), want %s (%d bytes)", "d", i, got[i].Name, got[i].Size, want[i].Name, want[i].Size)
		}
	}
	checkList(t, s, "", "top")
	checkList(t, s, "d/sub", "z")
	for _, dir := range []string{"nope", "d/nope", "nope/deeper"} {
		got, err := s.List(ctx, dir)
		if err != nil || len(got) != 0 {
			t.Errorf("List(%q) of a missing dir: got %v, %v; want an empty list and nil", dir, got, err)
		}
	}
}

func testRemove(t *testing.T, s archive.Storage) {
	ctx := t.Context()
	mustPut(t, s, "wal/a", []byte("a"))
	mustPut(t, s, "wal/b", []byte("b"))
	if err := s.Remove(ctx, "wal/a"); err != nil {
		t.Fatalf("Remove(%q): got %v, want nil", "wal/a", err)
	}
	checkMissing(t, s, "wal/a")
	checkList(t, s, "wal", "b")
	if err := s.Remove(ctx, "wal/a"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second Remove(%q): got %v, want an error matching fs.ErrNotExist", "wal/a", err)
	}
	// A removed name can be Put again.
	mustPut(t, s, "wal/a", []byte("again"))
	checkContent(t, s, "wal/a", []byte("again"))

	// A directory goes once it is empty, and not before.
	mustPut(t, s, "wal/seg.tail/1", []byte("1"))
	if err := s.Remove(ctx, "wal/seg.tail"); err == nil {
		t.Errorf("Remove(%q) of a directory that holds a file: got nil, want an error", "wal/seg.tail")
	}
	checkContent(t, s, "wal/seg.tail/1", []byte("1"))
	if err := s.Remove(ctx, "wal/seg.tail/1"); err != nil {
		t.Fatalf("Remove(%q): got %v, want nil", "wal/seg.tail/1", err)
	}
	if err := s.Remove(ctx, "wal/seg.tail"); err != nil {
		t.Errorf("Remove(%q) of an empty directory: got %v, want nil", "wal/seg.tail", err)
	}
	if err := s.Remove(ctx, "wal/seg.tail"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second Remove(%q) of a directory: got %v, want an error matching fs.ErrNotExist", "wal/seg.tail", err)
	}
	checkList(t, s, "wal", "a", "b")
	mustPut(t, s, "wal/seg.tail/2", []byte("2"))
	checkList(t, s, "wal/seg.tail", "2")
}

// invalidNames are names every method must refuse before touching the
// backend. An absolute name points into a scratch directory, so a backend
// that fails this test does no harm.
func invalidNames(t *testing.T) []string {
	return []string{
		"", filepath.Join(t.TempDir(), "abs"), "/", ".", "..", "../x", "../../x", "a/../b", "a/..",
		"a//b", "a/", "./a", ".hidden", "wal/.hidden", "a\\b", "..\\x", "a\x00b",
	}
}

func testInvalidNames(t *testing.T, s archive.Storage) {
	ctx := t.Context()
	w, isWatcher := s.(archive.Watcher)
	for _, name := range invalidNames(t) {
		if err := s.Put(ctx, name, bytes.NewReader([]byte("x"))); !errors.Is(err, archive.ErrInvalidName) {
			t.Errorf("Put(%q): got %v, want archive.ErrInvalidName", name, err)
		}
		if r, err := s.Open(ctx, name); !errors.Is(err, archive.ErrInvalidName) {
			if err == nil {
				r.Close()
			}
			t.Errorf("Open(%q): got %v, want archive.ErrInvalidName", name, err)
		}
		if _, err := s.Stat(ctx, name); !errors.Is(err, archive.ErrInvalidName) {
			t.Errorf("Stat(%q): got %v, want archive.ErrInvalidName", name, err)
		}
		if err := s.Remove(ctx, name); !errors.Is(err, archive.ErrInvalidName) {
			t.Errorf("Remove(%q): got %v, want archive.ErrInvalidName", name, err)
		}
		if name == "" {
			continue // "" is the root for List and Watch
		}
		if _, err := s.List(ctx, name); !errors.Is(err, archive.ErrInvalidName) {
			t.Errorf("List(%q): got %v, want archive.ErrInvalidName", name, err)
		}
		if isWatcher {
			wctx, cancel := context.WithCancel(ctx)
			if _, err := w.Watch(wctx, name); !errors.Is(err, archive.ErrInvalidName) {
				t.Errorf("Watch(%q): got %v, want archive.ErrInvalidName", name, err)
			}
			cancel()
		}
	}
	// Names the invalid ones would resolve to, were they cleaned up.
	for _, name := range []string{"x", "b", "a/b", "a", "hidden", "abs"} {
		checkMissing(t, s, name)
	}
	checkList(t, s, "")
	checkList(t, s, "a")
	checkList(t, s, "wal")
}

func testStat(t *testing.T, s archive.Storage) {
	before := time.Now()
	mustPut(t, s, "wal/seg", make([]byte, 1234))
	after := time.Now()
	fi, err := s.Stat(t.Context(), "wal/seg")
	if err != nil {
		t.Fatalf("Stat(%q): got %v, want nil", "wal/seg", err)
	}
	if fi.Name != "seg" || !sizeOK(s, fi.Size, 1234) {
		t.Errorf("Stat(%q): got name %q size %d, want name %q size %d", "wal/seg", fi.Name, fi.Size, "seg", 1234)
	}
	// Generous: remote backends have their own clock and second resolution.
	const slack = 5 * time.Minute
	if fi.ModTime.Before(before.Add(-slack)) || fi.ModTime.After(after.Add(slack)) {
		t.Errorf("Stat(%q).ModTime: got %v, want within %v of %v", "wal/seg", fi.ModTime, slack, before)
	}
	list, err := s.List(t.Context(), "wal")
	if err != nil || len(list) != 1 {
		t.Fatalf("List(%q): got %v, %v; want one file", "wal", list, err)
	}
	if list[0].Name != fi.Name || list[0].Size != fi.Size || !list[0].ModTime.Equal(fi.ModTime) || list[0].Mode != fi.Mode {
		t.Errorf("List(%q)[0]: got %+v, want what Stat says, %+v", "wal", list[0], fi)
	}
}

func testWatch(t *testing.T, s archive.Storage) {
	w, ok := s.(archive.Watcher)
	if !ok {
		t.Skipf("%T is not an archive.Watcher; callers poll", s)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// wal/sub does not exist yet: Watch must still work.
	ch, err := w.Watch(ctx, "wal/sub")
	if err != nil {
		t.Fatalf("Watch(%q): got %v, want nil", "wal/sub", err)
	}
	for _, name := range []string{"wal/sub/a", "wal/sub/b"} {
		drain(ch)
		mustPut(t, s, name, randomBytes(4, 3<<20))
		select {
		case _, ok := <-ch:
			if !ok {
				t.Fatalf("Watch channel closed before ctx was done")
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("Put(%q): got no signal from Watch(%q) within 2s, want one", name, "wal/sub")
		}
	}
	cancel()
	timeout := time.After(2 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("Watch channel still open 2s after ctx was cancelled, want it closed")
		}
	}
}

// RunFileModes checks that a backend stores files with the mode it is
// configured with, for every mode walship allows but the default:
// newStorage returns an empty archive that is an archive.Moder and gives
// files mode. Run checks the default.
func RunFileModes(t *testing.T, newStorage func(t *testing.T, mode fs.FileMode) archive.Storage) {
	for _, mode := range []fs.FileMode{0o600, 0o644, 0o604} {
		t.Run(fmt.Sprintf("%04o", uint32(mode)), func(t *testing.T) {
			s := newStorage(t, mode)
			m, ok := s.(archive.Moder)
			if !ok {
				t.Fatalf("%T is not an archive.Moder", s)
			}
			if got := m.FileMode(); got != mode {
				t.Fatalf("FileMode(): got %04o, want %04o", uint32(got), uint32(mode))
			}
			testFileMode(t, s)
		})
	}
}

// testFileMode checks that every file Put stores, in existing and in new
// directories, has the backend's mode, as Stat and List report it.
func testFileMode(t *testing.T, s archive.Storage) {
	m, ok := s.(archive.Moder)
	if !ok {
		t.Skipf("%T is not an archive.Moder", s)
	}
	want := m.FileMode()
	if err := archive.CheckFileMode(want); err != nil {
		t.Fatalf("FileMode(): %v", err)
	}
	names := []string{"top", "wal/seg", "wal/seg.tail/00000000-00001000", "backups/20261122T000000Z/base.tar.zst"}
	for _, name := range names {
		mustPut(t, s, name, []byte(name))
		fi, err := s.Stat(t.Context(), name)
		if err != nil {
			t.Fatalf("Stat(%q): got %v, want nil", name, err)
		}
		if fi.Mode != want {
			t.Errorf("Stat(%q).Mode: got %04o, want the backend's FileMode %04o", name, uint32(fi.Mode), uint32(want))
		}
	}
	list, err := s.List(t.Context(), "wal")
	if err != nil || len(list) != 1 {
		t.Fatalf("List(%q): got %v, %v; want one file", "wal", list, err)
	}
	if list[0].Mode != want {
		t.Errorf("List(%q)[0].Mode: got %04o, want %04o", "wal", uint32(list[0].Mode), uint32(want))
	}
}

// testTempFiles checks that ListTemp shows the temporary file of a Put in
// progress, and only that, and that RemoveTemp removes it and refuses
// every other name.
func testTempFiles(t *testing.T, s archive.Storage) {
	tf, ok := s.(archive.TempFiles)
	if !ok {
		t.Skipf("%T is not an archive.TempFiles", s)
	}
	ctx := t.Context()
	mustPut(t, s, "wal/other", []byte("x"))
	mustPut(t, s, "top", []byte("t"))
	checkTemp(t, tf, "")

	r := &stallingReader{data: randomBytes(5, 64<<10), stalled: make(chan struct{}), release: make(chan error)}
	done := make(chan error, 1)
	go func() { done <- s.Put(ctx, "wal/seg", r) }()
	select {
	case <-r.stalled:
	case err := <-done:
		t.Fatalf("Put returned %v before reading all its input", err)
	}
	temps := checkTemp(t, tf, "", "wal/.seg.tmp.")
	checkTemp(t, tf, "wal", "wal/.seg.tmp.")
	checkTemp(t, tf, "backups")
	checkTemp(t, tf, "no/such/dir")
	checkList(t, s, "wal", "other")
	tmp := temps[0]
	if !archive.IsTempName(tmp.Name) {
		t.Errorf("ListTemp: %q is not a name IsTempName accepts", tmp.Name)
	}
	if time.Since(tmp.ModTime) > 5*time.Minute || tmp.ModTime.After(time.Now().Add(5*time.Minute)) {
		t.Errorf("ListTemp: %s modified at %v, want about now", tmp.Path(), tmp.ModTime)
	}

	for _, bad := range [][2]string{
		{"wal", "other"}, {"", "top"}, {"wal", ".other"}, {"wal", ".seg.tmp.ZZ"}, {"wal", "x/" + tmp.Name},
		{"../wal", tmp.Name}, {"/wal", tmp.Name}, {".wal", tmp.Name}, {"wal/", tmp.Name}, {"wal", ""},
	} {
		if err := tf.RemoveTemp(ctx, bad[0], bad[1]); !errors.Is(err, archive.ErrInvalidName) {
			t.Errorf("RemoveTemp(%q, %q): got %v, want archive.ErrInvalidName", bad[0], bad[1], err)
		}
	}
	for _, bad := range []string{"../x", ".hidden", "/abs", "a//b"} {
		if _, err := tf.ListTemp(ctx, bad); !errors.Is(err, archive.ErrInvalidName) {
			t.Errorf("ListTemp(%q): got %v, want archive.ErrInvalidName", bad, err)
		}
	}
	checkContent(t, s, "wal/other", []byte("x"))
	checkContent(t, s, "top", []byte("t"))
	missing := ".seg.tmp.0123456789abcdef"
	if err := tf.RemoveTemp(ctx, "wal", missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("RemoveTemp(%q, %q) of a missing file: got %v, want an error matching fs.ErrNotExist", "wal", missing, err)
	}

	// Removing the file of a Put in progress makes that Put fail, and
	// nothing else.
	if err := tf.RemoveTemp(ctx, tmp.Dir, tmp.Name); err != nil {
		t.Fatalf("RemoveTemp(%q, %q): got %v, want nil", tmp.Dir, tmp.Name, err)
	}
	checkTemp(t, tf, "")
	if err := tf.RemoveTemp(ctx, tmp.Dir, tmp.Name); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second RemoveTemp(%q, %q): got %v, want an error matching fs.ErrNotExist", tmp.Dir, tmp.Name, err)
	}
	r.release <- errReader
	if err := <-done; !errors.Is(err, errReader) {
		t.Errorf("Put from a failing reader: got %v, want an error wrapping the reader's", err)
	}
	checkMissing(t, s, "wal/seg")
	checkTemp(t, tf, "")
	mustPut(t, s, "wal/seg", []byte("again"))
	checkContent(t, s, "wal/seg", []byte("again"))
	checkTemp(t, tf, "")
}

// checkTemp checks the paths ListTemp(dir) returns, in order: each is a
// prefix of one path, as the random part cannot be known.
func checkTemp(t *testing.T, tf archive.TempFiles, dir string, prefixes ...string) []archive.TempFile {
	t.Helper()
	got, err := tf.ListTemp(t.Context(), dir)
	if err != nil {
		t.Fatalf("ListTemp(%q): got %v, want nil", dir, err)
	}
	ok := len(got) == len(prefixes)
	var paths []string
	for i, f := range got {
		paths = append(paths, f.Path())
		if ok && !strings.HasPrefix(f.Path(), prefixes[i]) {
			ok = false
		}
	}
	if !ok {
		t.Errorf("ListTemp(%q): got %q, want paths starting with %q", dir, paths, prefixes)
	}
	return got
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func mustPut(t *testing.T, s archive.Storage, name string, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), name, bytes.NewReader(data)); err != nil {
		t.Fatalf("Put(%q): got %v, want nil", name, err)
	}
}

// checkContent checks name's bytes, through Open, Stat and List.
func checkContent(t *testing.T, s archive.Storage, name string, want []byte) {
	t.Helper()
	r, err := s.Open(t.Context(), name)
	if err != nil {
		t.Fatalf("Open(%q): got %v, want nil", name, err)
	}
	got, err := io.ReadAll(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("reading %q: got %v, want nil", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("content of %q: got %d bytes %s, want %d bytes %s", name, len(got), summary(got), len(want), summary(want))
	}
	fi, err := s.Stat(t.Context(), name)
	if err != nil {
		t.Fatalf("Stat(%q): got %v, want nil", name, err)
	}
	if !sizeOK(s, fi.Size, int64(len(want))) {
		t.Errorf("Stat(%q).Size: got %d, want %d", name, fi.Size, len(want))
	}
}

// testReplace checks archive.Replacer, for backends that are one.
func testReplace(t *testing.T, s archive.Storage) {
	rp, ok := s.(archive.Replacer)
	if !ok {
		t.Skip("not an archive.Replacer")
	}
	ctx := t.Context()
	if err := rp.Replace(ctx, "wal/none", bytes.NewReader([]byte("x"))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Replace of a missing file: got %v, want fs.ErrNotExist", err)
	}
	checkMissing(t, s, "wal/none")
	mustPut(t, s, "wal/seg", []byte("old"))
	if err := rp.Replace(ctx, "wal/seg", bytes.NewReader([]byte("new content"))); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	checkContent(t, s, "wal/seg", []byte("new content"))
	err := rp.Replace(ctx, "wal/seg", &failingReader{err: errors.New("source broke")})
	if err == nil {
		t.Fatal("Replace from a failing reader: got nil")
	}
	checkContent(t, s, "wal/seg", []byte("new content"))
	checkList(t, s, "wal", "seg")
}

// sizeOK reports whether got is the size a file of want bytes has when
// stored by s: exactly want, or more for a storage that encodes what it
// stores (archive.Encoding).
func sizeOK(s archive.Storage, got, want int64) bool {
	if e, ok := s.(archive.Encoding); ok && e.Encodes() {
		return got > want
	}
	return got == want
}

// checkMissing checks that name is not there for any reader.
func checkMissing(t *testing.T, s archive.Storage, name string) {
	t.Helper()
	if fi, err := s.Stat(t.Context(), name); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(%q): got %+v, %v; want an error matching fs.ErrNotExist", name, fi, err)
	}
	if r, err := s.Open(t.Context(), name); !errors.Is(err, fs.ErrNotExist) {
		if err == nil {
			r.Close()
		}
		t.Errorf("Open(%q): got %v, want an error matching fs.ErrNotExist", name, err)
	}
}

// checkList checks the names List(dir) returns, in order.
func checkList(t *testing.T, s archive.Storage, dir string, want ...string) {
	t.Helper()
	list, err := s.List(t.Context(), dir)
	if err != nil {
		t.Fatalf("List(%q): got %v, want nil", dir, err)
	}
	got := []string{}
	for _, fi := range list {
		got = append(got, fi.Name)
	}
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("List(%q): got %q, want %q", dir, got, want)
	}
}

// randomBytes returns n bytes that differ for every seed and every run the
// same, so a failure reproduces.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

func summary(b []byte) string {
	if len(b) > 16 {
		return fmt.Sprintf("%x...", b[:16])
	}
	return fmt.Sprintf("%x", b)
}

// failingReader returns err on every Read.
type failingReader struct{ err error }

func (r *failingReader) Read([]byte) (int, error) { return 0, r.err }

// stallingReader returns data, then closes stalled and blocks until release
// gives it the error to return, which it returns from then on.
type stallingReader struct {
	data    []byte
	stalled chan struct{}
	release chan error
	err     error
}

func (r *stallingReader) Read(p []byte) (int, error) {
	if len(r.data) > 0 {
		n := copy(p, r.data)
		r.data = r.data[n:]
		return n, nil
	}
	if r.err == nil {
		close(r.stalled)
		r.err = <-r.release
	}
	return 0, r.err
}

// cancellingReader cancels its ctx on the first Read, then keeps returning
// zeros until remaining runs out.
type cancellingReader struct {
	cancel    context.CancelFunc
	remaining int
}

func (r *cancellingReader) Read(p []byte) (int, error) {
	r.cancel()
	if r.remaining == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.remaining, 64<<10)
	clear(p[:n])
	r.remaining -= n
	return n, nil
}
