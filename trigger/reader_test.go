package trigger

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newReader(path string) (*Reader, *fakeClock) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	return &Reader{Path: path, Settle: time.Second, Now: c.now}, c
}

func TestReaderEmptyFileSettles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trigger")
	r, clock := newReader(path)
	if m, recheck, err := r.Mode(); m != None || recheck != 0 || err != nil {
		t.Fatalf("missing file: %v, %v, %v; want none", m, recheck, err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m, recheck, err := r.Mode()
	if m != None || recheck != time.Second || err != nil {
		t.Fatalf("new empty file: %v, recheck %v, %v; want none and a recheck in 1s", m, recheck, err)
	}
	clock.add(600 * time.Millisecond)
	if m, recheck, _ := r.Mode(); m != None || recheck != 400*time.Millisecond {
		t.Fatalf("empty for 0.6s: %v, recheck %v; want none, recheck in 0.4s", m, recheck)
	}
	clock.add(400 * time.Millisecond)
	if m, recheck, err := r.Mode(); m != Smart || recheck != 0 || err != nil {
		t.Fatalf("empty for 1s: %v, %v, %v; want smart", m, recheck, err)
	}
}

// echo CONTENT > trigger: the file is empty when first seen, then written.
func TestReaderFileWrittenInPlace(t *testing.T) {
	for _, tc := range []struct {
		content string
		want    Mode
		unknown bool
	}{
		{"fast\n", Fast, false},
		{"smart\n", Smart, false},
		{"nonsense\n", None, true},
	} {
		path := filepath.Join(t.TempDir(), "trigger")
		r, clock := newReader(path)
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if m, _, _ := r.Mode(); m != None {
			t.Fatalf("%q: empty at first: %v, want none", tc.content, m)
		}
		clock.add(10 * time.Millisecond)
		if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		m, recheck, err := r.Mode()
		if m != tc.want || recheck != 0 || errors.Is(err, ErrUnknownContent) != tc.unknown {
			t.Errorf("%q: got %v, recheck %v, err %v; want %v (unknown content: %v)", tc.content, m, recheck, err, tc.want, tc.unknown)
		}
		// Emptied again (echo -n > trigger): it must settle again.
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
		clock.add(5 * time.Second)
		if m, recheck, _ := r.Mode(); m != None || recheck == 0 {
			t.Errorf("%q, then emptied: %v, recheck %v; want none until it settles", tc.content, m, recheck)
		}
	}
}

// A file replaced by another empty file starts settling anew.
func TestReaderEmptyFileReplaced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "trigger")
	r, clock := newReader(path)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r.Mode()
	clock.add(900 * time.Millisecond)
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	clock.add(200 * time.Millisecond)
	if m, recheck, _ := r.Mode(); m != None || recheck != time.Second {
		t.Errorf("replaced empty file: %v, recheck %v; want none, recheck in 1s", m, recheck)
	}
}
