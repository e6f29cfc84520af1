// Package stats holds the percentile arithmetic the benchmark programs
// share.
package stats

import (
	"math"
	"slices"
)

// Pct returns the q-th percentile of v by linear interpolation between
// closest ranks; NaN for no values.
func Pct(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	pos := q / 100 * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(s)-1)
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// Median is the 50th percentile of v.
func Median(v []float64) float64 { return Pct(v, 50) }
