package main

import (
	"github.com/walship/walship/internal/cli"
)

// topAction runs when no command is named: with none, the help; with an
// unknown one, a usage error that suggests the closest command.
func topAction(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowAppHelp(c)
	}
	return unknownCommand(c.App, c.Args().First())
}

func unknownCommand(app *cli.App, name string) error {
	if best := closestCommand(app, name); best != "" {
		return usagef("unknown command %q: did you mean %q? (walship --help lists the commands)", name, best)
	}
	return usagef("unknown command %q: walship --help lists the commands", name)
}

// closestCommand returns the visible command whose name is nearest name, if
// it is near enough to be a typo.
func closestCommand(app *cli.App, name string) string {
	best, bestD := "", max(2, len(name)/3)+1
	for _, c := range app.Commands {
		if c.Hidden {
			continue
		}
		if d := editDistance(name, c.Name); d < bestD {
			best, bestD = c.Name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, with a swap of two
// neighbouring letters counted as one edit (wiat → wait).
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
