package trigger

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{None: "none", Smart: "smart", Fast: "fast", Mode(7): "Mode(7)"} {
		if got := m.String(); got != want {
			t.Errorf("Mode(%d).String() = %q, want %q", int(m), got, want)
		}
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Mode
		unknown bool // want ErrUnknownContent
	}{
		{in: "", want: Smart},
		{in: " \t\r\n\v\f", want: Smart},
		{in: "smart", want: Smart},
		{in: "smart\n", want: Smart},
		{in: "smart\r\n", want: Smart},
		{in: "  SMART\t", want: Smart},
		{in: "Smart", want: Smart},
		{in: "fast", want: Fast},
		{in: "fast\n", want: Fast},
		{in: "FAST\r\n", want: Fast},
		{in: "\n\tFaSt  \n", want: Fast},
		{in: "fastest", unknown: true},
		{in: "smar", unknown: true},
		{in: "smart fast", unknown: true},
		{in: "smart\nfast", unknown: true},
		{in: "fast\x00", unknown: true},
		{in: "\u00a0fast", unknown: true}, // not ASCII white space
		{in: "ſmart", unknown: true},      // long s folds to s in Unicode, not here
		{in: "yes", unknown: true},
		{in: "1", unknown: true},
		{in: strings.Repeat("x", 200), unknown: true},
	} {
		got, err := Parse([]byte(tc.in))
		if tc.unknown {
			if !errors.Is(err, ErrUnknownContent) {
				t.Errorf("Parse(%q): got error %v, want ErrUnknownContent", tc.in, err)
			}
			if got != None {
				t.Errorf("Parse(%q) = %v, want none with the error", tc.in, got)
			}
			if q := strconv.Quote(strings.Trim(tc.in, asciiSpace)); err != nil && len(tc.in) <= 64 && !strings.Contains(err.Error(), q) {
				t.Errorf("Parse(%q): got error %q, want it to quote the content: %s", tc.in, err, q)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v, nil", tc.in, got, err, tc.want)
		}
	}
}

func TestParseQuotes(t *testing.T) {
	_, err := Parse([]byte(" promote now\n"))
	if got, want := err.Error(), `trigger file holds neither smart nor fast: "promote now"`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	_, err = Parse([]byte(strings.Repeat("y", 100)))
	if got, want := err.Error(), `"`+strings.Repeat("y", 64)+`"…`; !strings.HasSuffix(got, want) {
		t.Errorf("got %q, want it cut to 64 bytes: …%q", got, want)
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		path    string
		want    Mode
		wantErr bool
		unknown bool
	}{
		{name: "missing", path: filepath.Join(dir, "absent"), want: None},
		{name: "missing directory", path: filepath.Join(dir, "absent", "trigger"), want: None},
		{name: "empty", path: write("empty", ""), want: Smart},
		{name: "smart", path: write("smart", "smart\n"), want: Smart},
		{name: "fast", path: write("fast", "fast\n"), want: Fast},
		{name: "fast crlf", path: write("fastcrlf", "FAST\r\n"), want: Fast},
		{name: "junk", path: write("junk", "promote\n"), wantErr: true, unknown: true},
		{name: "64 bytes", path: write("64", "fast"+strings.Repeat(" ", 60)), want: Fast},
		{name: "65 bytes", path: write("65", "fast"+strings.Repeat(" ", 61)), wantErr: true, unknown: true},
		{name: "directory", path: dir, wantErr: true},
		{name: "fifo", path: fifo, wantErr: true},
		{name: "no path", path: "", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Read(tc.path)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Read: got error %v, want error: %v", err, tc.wantErr)
			}
			if errors.Is(err, ErrUnknownContent) != tc.unknown {
				t.Errorf("Read: got error %v, want ErrUnknownContent: %v", err, tc.unknown)
			}
			if got != tc.want {
				t.Errorf("Read: got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReadUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	p := filepath.Join(t.TempDir(), "trigger")
	if err := os.WriteFile(p, []byte("fast"), 0); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(p); err == nil {
		t.Errorf("Read of an unreadable file: got %v, nil; want an error", got)
	}
}

// files lists dir, to show that no temp file is left behind.
func files(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func content(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteConsume(t *testing.T) {
	for _, tc := range []struct {
		name       string
		noExchange bool
	}{
		{name: "exchange"},
		{name: "rename fallback", noExchange: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.noExchange {
				setExchange(t, func(a, b string) error { return errNoExchange })
			}
			dir := t.TempDir()
			p := filepath.Join(dir, "walship.trigger")
			for _, m := range []Mode{Smart, Fast, Smart, Fast} {
				if err := Write(p, m); err != nil {
					t.Fatalf("Write %v: %v", m, err)
				}
				if got, err := Read(p); err != nil || got != m {
					t.Errorf("Read after Write %v: got %v, %v; want %v, nil", m, got, err, m)
				}
				if got, want := content(t, p), m.String()+"\n"; got != want {
					t.Errorf("content after Write %v: got %q, want %q", m, got, want)
				}
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := fi.Mode().Perm(), os.FileMode(0o644); got != want {
				t.Errorf("mode: got %v, want %v, readable by PostgreSQL's user", got, want)
			}
			if err := Consume(p); err != nil {
				t.Fatalf("Consume: %v", err)
			}
			if got, want := content(t, p), "smart\n"; got != want {
				t.Errorf("content after Consume: got %q, want %q", got, want)
			}
			if got, err := Read(p); err != nil || got != Smart {
				t.Errorf("Read after Consume: got %v, %v; want smart, nil", got, err)
			}
			if err := Consume(p); err != nil {
				t.Errorf("second Consume: %v", err)
			}
			if got := files(t, dir); len(got) != 1 || got[0] != "walship.trigger" {
				t.Errorf("directory holds %q, want only walship.trigger", got)
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := Consume(p); err != nil {
				t.Errorf("Consume of a missing trigger: got %v, want nil", err)
			}
			if got := files(t, dir); len(got) != 0 {
				t.Errorf("Consume of a missing trigger left %q, want nothing: it must not recreate it", got)
			}
		})
	}
}

// A trigger removed by recovery_end_command while Consume runs stays removed.
func TestConsumeRemovedMeanwhile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "walship.trigger")
	if err := Write(p, Fast); err != nil {
		t.Fatal(err)
	}
	real := exchange
	setExchange(t, func(a, b string) error {
		if err := os.Remove(b); err != nil {
			t.Fatal(err)
		}
		return real(a, b)
	})
	if err := Consume(p); err != nil {
		t.Errorf("Consume: got %v, want nil", err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("directory holds %q, want nothing", got)
	}
}

func setExchange(t *testing.T, f func(a, b string) error) {
	old := exchange
	exchange = f
	t.Cleanup(func() { exchange = old })
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		path string
		mode Mode
	}{
		{name: "none", path: filepath.Join(dir, "t"), mode: None},
		{name: "bad mode", path: filepath.Join(dir, "t"), mode: Mode(9)},
		{name: "no path", path: "", mode: Smart},
		{name: "missing directory", path: filepath.Join(dir, "absent", "t"), mode: Smart},
		{name: "over a directory", path: dir, mode: Fast},
	} {
		if err := Write(tc.path, tc.mode); err == nil {
			t.Errorf("%s: Write(%q, %v): got nil, want an error", tc.name, tc.path, tc.mode)
		}
	}
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("directory holds %q after failed writes, want nothing", got)
	}
	if err := Consume(dir); err == nil {
		t.Errorf("Consume of a directory: got nil, want an error")
	}
	if err := Consume(""); err == nil {
		t.Errorf("Consume of no path: got nil, want an error")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "smart", "fast\n", " SMART\r\n", "fastest", "ſmart", "\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrUnknownContent) || m != None {
				t.Fatalf("Parse(%q) = %v, %v; want none and ErrUnknownContent", b, m, err)
			}
			return
		}
		if m != Smart && m != Fast {
			t.Fatalf("Parse(%q) = %v, want smart or fast", b, m)
		}
		for _, s := range []string{m.String(), strings.ToUpper(m.String()), " " + m.String() + "\r\n"} {
			if got, err := Parse([]byte(s)); err != nil || got != m {
				t.Fatalf("Parse(%q) = %v, %v; want %v, nil", s, got, err, m)
			}
		}
	})
}
