package stats

import (
	"math"
	"testing"
)

func TestPct(t *testing.T) {
	v := []float64{4, 1, 3, 2} // unsorted on purpose
	for _, tc := range []struct{ q, want float64 }{{0, 1}, {50, 2.5}, {100, 4}, {90, 3.7}} {
		if got := Pct(v, tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Pct(%v, %v) = %v, want %v", v, tc.q, got, tc.want)
		}
	}
	if v[0] != 4 {
		t.Error("Pct sorted its input in place")
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
}
