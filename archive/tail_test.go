package archive

import "testing"

func FuzzParseIncrement(f *testing.F) {
	for _, s := range []string{"00000000-00001000", "00012000-00012A40.zst", "00001000-00000000", "0000000-000010000", "00000000-0000100g"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		inc, ok := ParseIncrement(name)
		if !ok {
			return
		}
		if inc.Start < 0 || inc.Start >= inc.End || inc.End > maxTailOffset {
			t.Fatalf("ParseIncrement(%q) = %+v: bad range", name, inc)
		}
		for _, c := range []Compression{None, Zstd} {
			n := IncrementName(inc.Start, inc.End, c)
			back, ok := ParseIncrement(n)
			if !ok || back.Start != inc.Start || back.End != inc.End {
				t.Fatalf("IncrementName(%d, %d) = %q does not parse back: %+v %v", inc.Start, inc.End, n, back, ok)
			}
		}
		if name != IncrementName(inc.Start, inc.End, None) && name != IncrementName(inc.Start, inc.End, Zstd) {
			t.Fatalf("ParseIncrement accepted the non-canonical %q", name)
		}
	})
}
