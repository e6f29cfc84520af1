package pgver

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Major
		ok   bool
	}{
		{"15", 15, true},
		{"15\n", 15, true},
		{"9.6", 9, true},
		{"15.4 (Debian 15.4-1.pgdg120+1)", 15, true},
		{"16beta2", 16, true},
		{"18.4", 18, true},
		{"", 0, false},
		{"x15", 0, false},
		{"0", 0, false},
	} {
		got, err := Parse(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("Parse(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	if got := FromVersionNum(150004); got != 15 {
		t.Errorf("FromVersionNum(150004) = %d, want 15", got)
	}
	if got := FromVersionNum(180001); got != 18 {
		t.Errorf("FromVersionNum(180001) = %d, want 18", got)
	}
}

// What each major does, as the release notes say; a new major is a new
// row here and in the table.
func TestBehaviour(t *testing.T) {
	type row struct {
		legacyBackup, serverCompression, hotStandby, prefetch, triggerFile, boundaryNext, customRmgrs bool
		manifest                                                                                      int
	}
	for m, want := range map[Major]row{
		13: {true, false, false, false, true, false, false, 1},
		14: {true, false, true, false, true, false, false, 1},
		15: {false, true, true, true, true, false, true, 1},
		16: {false, true, true, true, false, false, true, 1},
		17: {false, true, true, true, false, true, true, 2},
		18: {false, true, true, true, false, true, true, 2},
	} {
		got := row{m.LegacyBaseBackup(), m.ServerCompression(), m.ReportsHotStandby(), m.RecoveryPrefetch(),
			m.PromoteTriggerFile(), m.WALFileNameAtBoundaryIsNext(), m.CustomRmgrs(), m.ManifestVersion()}
		if got != want {
			t.Errorf("%s: got %+v, want %+v", m, got, want)
		}
		if !m.Known() || m.CheckKnown("x") != nil || m.CheckBackup() != nil {
			t.Errorf("%s: not known, or no backups", m)
		}
	}
}

func TestUnknownMajor(t *testing.T) {
	newer := Newest + 1
	err := newer.CheckKnown("walship backup")
	if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "newer than this walship knows") ||
		!strings.Contains(err.Error(), "upgrade walship") {
		t.Errorf("CheckKnown(%d) = %v; want ErrUnknown telling to upgrade walship", newer, err)
	}
	if err := newer.CheckBackup(); !errors.Is(err, ErrUnknown) {
		t.Errorf("CheckBackup(%d) = %v; want ErrUnknown", newer, err)
	}
	if err := Major(12).CheckBackup(); err == nil || !strings.Contains(err.Error(), "pg_basebackup") {
		t.Errorf("CheckBackup(12) = %v; want a refusal naming pg_basebackup", err)
	}
	if err := Major(11).CheckKnown("x"); !errors.Is(err, ErrUnknown) {
		t.Errorf("CheckKnown(11) = %v; want ErrUnknown", err)
	}
}

func TestMagic(t *testing.T) {
	seen := map[uint16]bool{}
	prev := uint16(0)
	for _, m := range Majors() {
		magic, ok := m.Magic()
		if !ok || seen[magic] || magic <= prev {
			t.Errorf("%s: magic %04X: want a new, higher one per major", m, magic)
		}
		seen[magic], prev = true, magic
		if got, ok := FromMagic(magic); !ok || got != m {
			t.Errorf("FromMagic(%04X) = %d, %v; want %d", magic, got, ok, m)
		}
		if NewerMagic(magic) {
			t.Errorf("NewerMagic(%04X) of %s = true", magic, m)
		}
	}
	if !NewerMagic(prev + 1) {
		t.Errorf("NewerMagic(%04X) = false, want true for the next magic after %s's", prev+1, Newest)
	}
	if NewerMagic(0x1234) {
		t.Error("NewerMagic(1234) = true")
	}
}
