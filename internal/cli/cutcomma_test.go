package cli

import (
	"regexp"
	"testing"
)

// cutCommaSpace does what upstream's regular expression did.
func FuzzCutCommaSpace(f *testing.F) {
	re := regexp.MustCompile("[, ]+.*")
	for _, s := range []string{"", "archive", "archive, a", "a b,c", " x", "a,\nb c", "a ,, \n\n, b\nc", "é, ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := cutCommaSpace(s), re.ReplaceAllString(s, ""); got != want {
			t.Fatalf("cutCommaSpace(%q) = %q, the regular expression gives %q", s, got, want)
		}
	})
}
