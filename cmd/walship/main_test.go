package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
)

// The command table names each command as the command does.
func TestCommandTable(t *testing.T) {
	g := &globals{stdout: io.Discard, stderr: io.Discard, logger: slog.New(slog.DiscardHandler)}
	for _, wc := range walshipCommands() {
		if c := wc.build(g); c.Name != wc.name || c.Usage != "" {
			t.Errorf("walshipCommands: %q builds %q with usage %q; want its name, and its usage from the table",
				wc.name, c.Name, c.Usage)
		}
	}
}

// A call builds only the command it runs, and shows the same help as an
// app with every command built.
func TestCommandIn(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	for _, tc := range []struct {
		args []string
		name string
		only bool
	}{
		{[]string{"walship"}, "", true},
		{[]string{"walship", "--version"}, "", true},
		{[]string{"walship", "push", "a", "b"}, "push", true},
		{[]string{"walship", "--log-level", "debug", "--config", "push", "fetch"}, "fetch", true},
		{[]string{"walship", "--log-level=debug", "wait"}, "wait", true},
		{[]string{"walship", "-log-format", "json", "tail"}, "tail", true},
		{[]string{"walship", "help", "push"}, "help", false},
		{[]string{"walship", "--", "push"}, "", false},
		{[]string{"walship", "pussh"}, "pussh", true},
	} {
		name, only := commandIn(app, tc.args)
		if name != tc.name || only != tc.only {
			t.Errorf("commandIn(%q) = %q, %v; want %q, %v", tc.args, name, only, tc.name, tc.only)
		}
	}
	for _, args := range [][]string{{"walship", "--help"}, {"walship"}, {"walship", "push", "--help"},
		{"walship", "encryption", "--help"}, {"walship", "help", "fetch"}, {"walship", "pussh"}} {
		var lazyOut, lazyErr, fullOut, fullErr bytes.Buffer
		lazy := runApp(context.Background(), buildApp(&lazyOut, &lazyErr, args, nil), args, &lazyErr)
		full := runApp(context.Background(), newApp(&fullOut, &fullErr), args, &fullErr)
		if lazy != full || lazyOut.String() != fullOut.String() || lazyErr.String() != fullErr.String() {
			t.Errorf("walship %q: exit %d, stdout\n%s\nstderr %s\nwith every command built: exit %d, stdout\n%s\nstderr %s",
				args[1:], lazy, lazyOut.String(), lazyErr.String(), full, fullOut.String(), fullErr.String())
		}
	}
}
