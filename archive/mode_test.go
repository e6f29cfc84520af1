package archive

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestParseFileMode(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want fs.FileMode // 0: refused
	}{
		{"0640", 0o640}, {"640", 0o640}, {"0o640", 0o640}, {"0600", 0o600}, {"0644", 0o644}, {"0604", 0o604},
		{"0666", 0}, {"0660", 0}, {"0620", 0}, {"0602", 0}, // others may write
		{"0440", 0}, {"0200", 0}, {"0000", 0}, // the owner cannot read and write
		{"0700", 0}, {"0750", 0}, {"0641", 0}, // execute bits
		{"4640", 0}, {"1640", 0}, {"01640", 0}, {"77777", 0}, // special bits, too long
		{"", 0}, {"0o", 0}, {"rw-r-----", 0}, {"0x1a0", 0}, {"0648", 0}, {"-640", 0}, {" 0640", 0},
	} {
		got, err := ParseFileMode(tt.in)
		if tt.want == 0 {
			if err == nil {
				t.Errorf("ParseFileMode(%q): got %04o, want an error", tt.in, uint32(got))
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseFileMode(%q): got %04o, %v; want %04o", tt.in, uint32(got), err, uint32(tt.want))
		}
	}
}

func TestDirMode(t *testing.T) {
	for m, want := range map[fs.FileMode]fs.FileMode{0o640: 0o750, 0o600: 0o700, 0o644: 0o755, 0o604: 0o705} {
		if got := DirMode(m); got != want {
			t.Errorf("DirMode(%04o): got %04o, want %04o", uint32(m), uint32(got), uint32(want))
		}
	}
}

func FuzzParseFileMode(f *testing.F) {
	for _, s := range []string{"0640", "600", "0o644", "4755", "0666", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseFileMode(s)
		if err != nil {
			return
		}
		if err := CheckFileMode(m); err != nil {
			t.Fatalf("ParseFileMode(%q) = %04o, which CheckFileMode refuses: %v", s, uint32(m), err)
		}
		if m&0o600 != 0o600 || m&^0o644 != 0 {
			t.Fatalf("ParseFileMode(%q) = %04o: want the owner's rw and at most others' r", s, uint32(m))
		}
	})
}

func TestTempName(t *testing.T) {
	a, b := TempName("000000010000000000000003.zst"), TempName("000000010000000000000003.zst")
	if a == b {
		t.Errorf("TempName twice: got %q both times, want different names", a)
	}
	for _, name := range []string{a, b, TempName("x"), TempName("walship.json")} {
		if !IsTempName(name) || !strings.HasPrefix(name, ".") || ValidName(name) == nil {
			t.Errorf("TempName: %q is not a hidden name IsTempName accepts", name)
		}
	}
}

func TestIsTempName(t *testing.T) {
	const rnd = "0123456789abcdef"
	for name, want := range map[string]bool{
		".seg.tmp." + rnd:                          true,
		".000000010000000000000003.zst.tmp." + rnd: true,
		".a.tmp.b.tmp." + rnd:                      true,
		"seg.tmp." + rnd:                           false, // not hidden
		"..seg.tmp." + rnd:                         false,
		".tmp." + rnd:                              false, // no name
		"..tmp." + rnd:                             false,
		".seg.tmp.0123456789ABCDEF":                false,
		".seg.tmp.0123456789abcde":                 false,
		".seg.tmp.0123456789abcdef0":               false,
		".seg.tmp-" + rnd:                          false,
		".seg.tmp.0123456789abcdeg":                false,
		".nfs000000000123abcd00000001":             false,
		".sub/seg.tmp." + rnd:                      false,
		"":                                         false,
	} {
		if got := IsTempName(name); got != want {
			t.Errorf("IsTempName(%q): got %v, want %v", name, got, want)
		}
	}
	if err := CheckTempName("wal", "seg"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("CheckTempName(%q, %q): got %v, want ErrInvalidName", "wal", "seg", err)
	}
	if err := CheckTempName("../wal", ".seg.tmp."+rnd); !errors.Is(err, ErrInvalidName) {
		t.Errorf("CheckTempName(%q, ...): got %v, want ErrInvalidName", "../wal", err)
	}
	if err := CheckTempName("", ".seg.tmp."+rnd); err != nil {
		t.Errorf("CheckTempName at the root: got %v, want nil", err)
	}
}

func FuzzIsTempName(f *testing.F) {
	f.Add(".seg.tmp.0123456789abcdef")
	f.Add(TempName("x"))
	f.Fuzz(func(t *testing.T, name string) {
		if !IsTempName(name) {
			return
		}
		// What is accepted could have come from TempName, and can be
		// removed without leaving its directory.
		n := len(name) - len(".tmp.") - 16
		if base := name[1:n]; base == "" || strings.HasPrefix(base, ".") || strings.ContainsAny(name, "/\\\x00") {
			t.Fatalf("IsTempName(%q) = true for a name TempName cannot give", name)
		}
	})
}
