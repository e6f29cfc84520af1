package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/internal/pgtest"
	"github.com/walship/walship/trigger"
)

func testGlobals() (*globals, *bytes.Buffer) {
	var out bytes.Buffer
	return &globals{stdout: &out, stderr: &out, logger: slog.New(slog.DiscardHandler)}, &out
}

func TestPromoteTrigger(t *testing.T) {
	for _, tc := range []struct {
		fast bool
		want trigger.Mode
		line string
	}{
		{fast: false, want: trigger.Smart, line: "smart failover requested: the standby applies every archived segment, then ends recovery\n"},
		{fast: true, want: trigger.Fast, line: "fast failover requested: the standby ends recovery now, without the archived segments it has not restored yet\n"},
	} {
		t.Run(tc.want.String(), func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "walship.trigger")
			g, out := testGlobals()
			if err := runPromote(context.Background(), g, promoteOptions{Trigger: p, Fast: tc.fast}); err != nil {
				t.Fatalf("runPromote: %v", err)
			}
			if got, err := trigger.Read(p); err != nil || got != tc.want {
				t.Errorf("trigger file: got %v, %v; want %v, nil", got, err, tc.want)
			}
			if got := out.String(); got != tc.line {
				t.Errorf("stdout: got %q, want %q", got, tc.line)
			}
			if got := listDir(t, dir); len(got) != 1 {
				t.Errorf("directory holds %v, want only the trigger file", got)
			}

			out.Reset()
			if err := runPromote(context.Background(), g, promoteOptions{Trigger: p, Fast: tc.fast, JSON: true}); err != nil {
				t.Fatalf("runPromote --json: %v", err)
			}
			var res promoteResult
			if err := json.Unmarshal(out.Bytes(), &res); err != nil {
				t.Fatalf("--json output %q: %v", out, err)
			}
			want := promoteResult{Method: "trigger", Trigger: p, Mode: tc.want.String(), Message: strings.TrimSuffix(tc.line, "\n")}
			if res != want {
				t.Errorf("--json: got %+v, want %+v", res, want)
			}
		})
	}
}

// A fast trigger followed by a smart one leaves smart.
func TestPromoteTriggerReplaces(t *testing.T) {
	p := filepath.Join(t.TempDir(), "walship.trigger")
	g, _ := testGlobals()
	for _, fast := range []bool{true, false} {
		if err := runPromote(context.Background(), g, promoteOptions{Trigger: p, Fast: fast}); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := trigger.Read(p); err != nil || got != trigger.Smart {
		t.Errorf("trigger file: got %v, %v; want smart, nil", got, err)
	}
}

func TestPromoteTriggerMissingDirectory(t *testing.T) {
	g, _ := testGlobals()
	p := filepath.Join(t.TempDir(), "absent", "walship.trigger")
	err := runPromote(context.Background(), g, promoteOptions{Trigger: p})
	if err == nil || exitCode(err) != exitFailed || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("got %v (exit %d), want exit 1 saying the directory does not exist", err, exitCode(err))
	}
}

func TestPromoteUsage(t *testing.T) {
	p := filepath.Join(t.TempDir(), "walship.trigger")
	for _, tc := range []struct {
		name string
		opts promoteOptions
		want string // in the message
	}{
		{name: "nothing", opts: promoteOptions{}, want: "--trigger FILE"},
		{name: "both", opts: promoteOptions{Trigger: p, PG: "host=/nonexistent"}, want: "give one"},
		{name: "fast with pg", opts: promoteOptions{PG: "host=/nonexistent", Fast: true}, want: "--fast"},
		{name: "wait with trigger", opts: promoteOptions{Trigger: p, Wait: true}, want: "--pg only"},
		{name: "timeout with trigger", opts: promoteOptions{Trigger: p, Timeout: time.Second}, want: "--pg only"},
		{name: "negative timeout", opts: promoteOptions{PG: "host=/nonexistent", Timeout: -time.Second}, want: "--timeout"},
		{name: "bad connection string", opts: promoteOptions{PG: "host=x port=notaport"}, want: "--pg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, out := testGlobals()
			err := runPromote(context.Background(), g, tc.opts)
			var u usageError
			if !errors.As(err, &u) || exitCode(err) != exitUsage {
				t.Fatalf("got %v (exit %d), want a usage error (exit %d)", err, exitCode(err), exitUsage)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want it to mention %q", err, tc.want)
			}
			if _, statErr := os.Stat(p); statErr == nil {
				t.Errorf("a usage error wrote the trigger file")
			}
			if out.Len() != 0 {
				t.Errorf("stdout: got %q, want nothing", out)
			}
		})
	}
	g, _ := testGlobals()
	err := runPromote(context.Background(), g, promoteOptions{})
	if got := err.Error(); !strings.Contains(got, "--trigger") || !strings.Contains(got, "--pg") {
		t.Errorf("got %q, want it to explain both --trigger and --pg", got)
	}
}

// promoteApp is the walship app with the promote command, whether or not
// newApp lists it yet.
func promoteApp(out *bytes.Buffer) func(args ...string) (int, error) {
	return func(args ...string) (int, error) {
		app := newApp(out, out)
		if app.Command("promote") == nil {
			g := &globals{stdout: out, stderr: out, logger: slog.New(slog.DiscardHandler)}
			app.Commands = append(app.Commands, promoteCommand(g))
		}
		err := app.RunContext(context.Background(), append([]string{"walship"}, args...))
		return exitCode(err), err
	}
}

func TestPromoteCommandLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "walship.trigger")
	var out bytes.Buffer
	run := promoteApp(&out)
	if code, err := run("promote", "--trigger", p, "--fast"); code != exitOK {
		t.Fatalf("promote --trigger --fast: exit %d, %v", code, err)
	}
	if got, err := trigger.Read(p); err != nil || got != trigger.Fast {
		t.Errorf("trigger file: got %v, %v; want fast, nil", got, err)
	}
	envTrigger := filepath.Join(dir, "from-env.trigger")
	t.Setenv("WALSHIP_TRIGGER", envTrigger)
	if code, err := run("promote"); code != exitOK {
		t.Fatalf("promote with WALSHIP_TRIGGER: exit %d, %v", code, err)
	}
	if got, err := trigger.Read(envTrigger); err != nil || got != trigger.Smart {
		t.Errorf("trigger file from WALSHIP_TRIGGER: got %v, %v; want smart, nil", got, err)
	}
	for _, args := range [][]string{
		{"promote", p},                       // the file is not an argument
		{"promote", "--no-such-flag"},        // unknown flag
		{"promote", "--timeout", "soon"},     // not a duration
		{"promote", "--pg", "x=1", "--fast"}, // no fast pg_promote
		{"promote", "--wait"},                // wait for what?
	} {
		if code, err := run(args...); code != exitUsage {
			t.Errorf("%v: exit %d (%v), want %d", args, code, err, exitUsage)
		}
	}
}

func TestRestoreCommandWaits(t *testing.T) {
	for cmd, want := range map[string]bool{
		"walship wait --archive /srv/walship/main --trigger /var/lib/postgresql/walship.trigger %f %p %r": true,
		"/usr/local/bin/walship wait %f %p":                       true,
		"'/opt/walship/bin/walship' --log-level debug wait %f %p": true,
		"walship --log-format=json wait %f %p":                    true,
		"exec walship --log-level=info wait --archive /a %f %p":   true,
		"walship fetch --archive /srv/walship/main %f %p":         false,
		"walship --log-level wait fetch %f %p":                    false,
		"cp /mnt/server/archivedir/%f %p":                         false,
		"pg_standby -t /tmp/trigger /mnt/archive %f %p %r":        false,
		"":                                    false,
		"/usr/bin/walship-wrapper wait %f %p": false,
		"walship fetch --archive /srv/walship/main %f %p # not walship wait": false,
	} {
		if got := restoreCommandWaits(cmd); got != want {
			t.Errorf("restoreCommandWaits(%q): got %v, want %v", cmd, got, want)
		}
	}
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL; make test-short runs no PostgreSQL")
	}
}

func TestPromotePGPrimary(t *testing.T) {
	skipShort(t)
	t.Parallel()
	primary := pgtest.New(t, pgtest.Options{})
	g, out := testGlobals()
	err := runPromote(context.Background(), g, promoteOptions{PG: primary.ConnString(), Wait: true})
	if err == nil || !strings.Contains(err.Error(), "server is not in recovery: already a primary?") {
		t.Fatalf("got %v, want \"server is not in recovery: already a primary?\"", err)
	}
	if got := exitCode(err); got != exitFailed {
		t.Errorf("exit code: got %d, want %d", got, exitFailed)
	}
	if out.Len() != 0 {
		t.Errorf("stdout: got %q, want nothing", out)
	}
}

// newStandby starts a streaming standby.signal standby of primary, with
// extra postgresql.conf lines.
func newStandby(t *testing.T, primary *pgtest.Cluster, conf ...string) *pgtest.Cluster {
	t.Helper()
	s := pgtest.BaseBackup(t, primary, pgtest.Options{
		Conf: append([]string{"primary_conninfo = '" + primary.ConnString() + "'"}, conf...),
	})
	s.WriteFile(t, "standby.signal", "")
	s.Start(t)
	if got := s.QueryValue(t, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("standby: pg_is_in_recovery() = %q, want t", got)
	}
	return s
}

func TestPromotePGStandby(t *testing.T) {
	skipShort(t)
	t.Parallel()
	primary := pgtest.New(t, pgtest.Options{})
	primary.Exec(t, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)")

	t.Run("wait", func(t *testing.T) {
		t.Parallel()
		s := newStandby(t, primary)
		g, out := testGlobals()
		err := runPromote(context.Background(), g, promoteOptions{PG: s.ConnString(), Wait: true, Timeout: 60 * time.Second, JSON: true})
		if err != nil {
			t.Fatalf("runPromote --wait: %v", err)
		}
		var res promoteResult
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("--json output %q: %v", out, err)
		}
		if res.Method != "pg_promote" || !res.Wait || !res.Promoted {
			t.Errorf("--json: got %+v, want method pg_promote, wait and promoted", res)
		}
		if got := s.QueryValue(t, "SELECT pg_is_in_recovery()"); got != "f" {
			t.Errorf("after promote --wait: pg_is_in_recovery() = %q, want f", got)
		}
		s.Exec(t, "INSERT INTO t VALUES (2)") // writable
		err = runPromote(context.Background(), g, promoteOptions{PG: s.ConnString()})
		if err == nil || !strings.Contains(err.Error(), "already a primary?") {
			t.Errorf("second promote: got %v, want \"already a primary?\"", err)
		}
	})

	t.Run("no wait", func(t *testing.T) {
		t.Parallel()
		s := newStandby(t, primary)
		g, out := testGlobals()
		if err := runPromote(context.Background(), g, promoteOptions{PG: s.ConnString()}); err != nil {
			t.Fatalf("runPromote: %v", err)
		}
		if got := out.String(); !strings.HasPrefix(got, "promotion requested") {
			t.Errorf("stdout: got %q, want \"promotion requested…\"", got)
		}
		s.WaitFor(t, "SELECT pg_is_in_recovery()", "f", 60*time.Second)
	})

	// pg_promote() cannot end the recovery of a standby whose
	// restore_command is walship wait; promote says to use the trigger.
	t.Run("walship wait", func(t *testing.T) {
		t.Parallel()
		// "false &&" answers "not found" at once, so the standby streams.
		s := newStandby(t, primary, "restore_command = 'false && walship wait --archive /nonexistent %f %p'")
		g, _ := testGlobals()
		err := runPromote(context.Background(), g, promoteOptions{PG: s.ConnString(), Wait: true})
		if err == nil || !strings.Contains(err.Error(), "--trigger") {
			t.Fatalf("got %v, want an error pointing to --trigger", err)
		}
		if got := exitCode(err); got != exitFailed {
			t.Errorf("exit code: got %d, want %d", got, exitFailed)
		}
		if got := s.QueryValue(t, "SELECT pg_is_in_recovery()"); got != "t" {
			t.Errorf("pg_is_in_recovery() = %q, want t: promote must not have asked", got)
		}
	})
}

func TestPromotePGUnreachable(t *testing.T) {
	g, _ := testGlobals()
	// A Unix socket directory that does not exist fails at once.
	err := runPromote(context.Background(), g, promoteOptions{PG: "host=" + t.TempDir() + " port=1 connect_timeout=5"})
	if err == nil || exitCode(err) != exitFailed {
		t.Errorf("got %v (exit %d), want a failure (exit %d)", err, exitCode(err), exitFailed)
	}
}
