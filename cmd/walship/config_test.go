package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/internal/cli"
)

// probeCommand prints what its flags resolve to. Its flags are named, typed
// and bound to environment variables like walship's own, and the config file
// sets them as it sets every command's.
func probeCommand(out io.Writer) *cli.Command {
	return &cli.Command{
		Name:   "probe",
		Hidden: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "compress", Value: "zstd", EnvVars: []string{"WALSHIP_COMPRESS"}},
			&cli.DurationFlag{Name: "poll", Value: time.Second, EnvVars: []string{"WALSHIP_POLL"}},
			&cli.BoolFlag{Name: "cleanup", EnvVars: []string{"WALSHIP_CLEANUP"}},
			&cli.StringSliceFlag{Name: "identity", EnvVars: []string{"WALSHIP_SSH_IDENTITY"}},
		},
		Action: func(c *cli.Context) error {
			fmt.Fprintf(out, "compress=%s\npoll=%s\ncleanup=%t\nidentity=%s\n",
				c.String("compress"), c.Duration("poll"), c.Bool("cleanup"), strings.Join(c.StringSlice("identity"), ","))
			return nil
		},
	}
}

// configEnv lists the variables these tests depend on; each test starts
// with all of them unset.
var configEnv = []string{"WALSHIP_CONFIG", "WALSHIP_COMPRESS", "WALSHIP_POLL", "WALSHIP_CLEANUP",
	"WALSHIP_SSH_IDENTITY", "WALSHIP_LOG_LEVEL", "WALSHIP_LOG_FORMAT", "WALSHIP_ARCHIVE", "PGDATA"}

func unsetConfigEnv(t *testing.T) {
	t.Helper()
	for _, k := range configEnv {
		t.Setenv(k, "") // restores the old value when the test ends
		os.Unsetenv(k)
	}
}

// configRun runs walship with the probe command and defaultFile as the
// default config file, and returns its exit code and output.
func configRun(t *testing.T, defaultFile string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	app := newApp(&out, &errb, probeCommand(&out))
	found := false
	for _, f := range app.Flags {
		if cf, ok := f.(*cli.StringFlag); ok && cf.Name == "config" {
			cf.Value, found = defaultFile, true
		}
	}
	if !found {
		t.Fatal("newApp has no --config flag")
	}
	code = runApp(context.Background(), app, append([]string{"walship"}, args...), &errb)
	return code, out.String(), errb.String()
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "walship.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigPrecedence(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string            // the default config file; none if empty
		env  map[string]string // environment
		args []string          // flags after "probe"
		want string            // a line of the probe's output
	}{
		{"string default", "", nil, nil, "compress=zstd"},
		{"string file", "compress: none", nil, nil, "compress=none"},
		{"string env", "compress: none", map[string]string{"WALSHIP_COMPRESS": "lz4"}, nil, "compress=lz4"},
		{"string flag", "compress: none", map[string]string{"WALSHIP_COMPRESS": "lz4"}, []string{"--compress", "gzip"}, "compress=gzip"},

		{"duration default", "", nil, nil, "poll=1s"},
		{"duration file", "poll: 2s", nil, nil, "poll=2s"},
		{"duration env", "poll: 2s", map[string]string{"WALSHIP_POLL": "3s"}, nil, "poll=3s"},
		{"duration flag", "poll: 2s", map[string]string{"WALSHIP_POLL": "3s"}, []string{"--poll", "4s"}, "poll=4s"},

		{"bool default", "", nil, nil, "cleanup=false"},
		{"bool file", "cleanup: true", nil, nil, "cleanup=true"},
		{"bool env", "cleanup: true", map[string]string{"WALSHIP_CLEANUP": "false"}, nil, "cleanup=false"},
		{"bool flag", "cleanup: true", map[string]string{"WALSHIP_CLEANUP": "false"}, []string{"--cleanup"}, "cleanup=true"},
		{"bool flag false", "cleanup: false", map[string]string{"WALSHIP_CLEANUP": "true"}, []string{"--cleanup=false"}, "cleanup=false"},

		{"list default", "", nil, nil, "identity=\n"},
		{"list file", "identity: [/k/a, /k/b]", nil, nil, "identity=/k/a,/k/b\n"},
		{"list file scalar", "identity: /k/a", nil, nil, "identity=/k/a\n"},
		{"list env", "identity: [/k/a, /k/b]", map[string]string{"WALSHIP_SSH_IDENTITY": "/k/c"}, nil, "identity=/k/c\n"},
		{"list flag", "identity: [/k/a]", map[string]string{"WALSHIP_SSH_IDENTITY": "/k/c"}, []string{"--identity", "/k/d"}, "identity=/k/d\n"},

		{"empty env still hides the file", "compress: none", map[string]string{"WALSHIP_COMPRESS": ""}, nil, "compress=\n"},
		{"null in the file leaves the default", "compress:\npoll: ~", nil, nil, "compress=zstd\npoll=1s"},
		{"strings stay strings", "compress: 1234", nil, nil, "compress=1234"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unsetConfigEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			def := filepath.Join(t.TempDir(), "absent.yaml")
			if tc.file != "" {
				def = writeConfig(t, tc.file)
			}
			code, out, stderr := configRun(t, def, append([]string{"probe"}, tc.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("got\n%s\nwant a line %q", out, tc.want)
			}
		})
	}
}

func TestConfigFileChoice(t *testing.T) {
	def := writeConfig(t, "compress: from-default\n")
	other := writeConfig(t, "compress: from-other\n")
	absent := filepath.Join(t.TempDir(), "absent.yaml")
	for _, tc := range []struct {
		name string
		def  string // default config file
		env  string // WALSHIP_CONFIG, if not empty
		args []string
		want string
	}{
		{"default file when present", def, "", []string{"probe"}, "compress=from-default"},
		{"no default file", absent, "", []string{"probe"}, "compress=zstd"},
		{"--config instead of the default", def, "", []string{"--config", other, "probe"}, "compress=from-other"},
		{"WALSHIP_CONFIG instead of the default", def, other, []string{"probe"}, "compress=from-other"},
		{"--config '' reads none", def, "", []string{"--config", "", "probe"}, "compress=zstd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unsetConfigEnv(t)
			if tc.env != "" {
				t.Setenv("WALSHIP_CONFIG", tc.env)
			}
			code, out, stderr := configRun(t, tc.def, tc.args...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !strings.Contains(out, tc.want+"\n") {
				t.Errorf("got\n%s\nwant a line %q", out, tc.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	absent := filepath.Join(t.TempDir(), "absent.yaml")
	malformed := writeConfig(t, "archive: [unclosed\n")
	seg := "000000010000000000000003"
	for _, tc := range []struct {
		name    string
		def     string // default config file; absent if empty
		file    string // written to a file that --config names, if not empty
		env     string // WALSHIP_CONFIG
		args    []string
		want    int
		message string
	}{
		{"--config missing", "", "", "", []string{"--config", absent, "probe"}, exitUsage, "no such file"},
		{"WALSHIP_CONFIG missing", "", "", absent, []string{"probe"}, exitUsage, "no such file"},
		{"--config missing, no command", "", "", "", []string{"--config", absent}, exitUsage, "no such file"},
		{"malformed", "", "archive: [unclosed\n", "", []string{"probe"}, exitUsage, "config file"},
		{"malformed default file", malformed, "", "", []string{"probe"}, exitUsage, malformed},
		{"not a mapping", "", "- archive\n", "", []string{"probe"}, exitUsage, "want flag names and values"},
		{"bad duration", "", "poll: 5\n", "", []string{"probe"}, exitUsage, "poll: want a duration"},
		{"bad bool", "", "cleanup: maybe\n", "", []string{"probe"}, exitUsage, "cleanup: want true or false"},
		{"bad list", "", "identity: {a: b}\n", "", []string{"probe"}, exitUsage, "identity: want a list"},
		{"set twice", "", "poll: 1s\npoll: 2s\n", "", []string{"probe"}, exitUsage, "poll is set twice"},
		{"bad log level", "", "log-level: loud\n", "", []string{"probe"}, exitUsage, "--log-level"},

		// Exit 2 would tell PostgreSQL "not found", which ends recovery.
		{"wait, --config missing", "", "", "", []string{"--config", absent, "wait", seg, "x"}, exitAbortRec, "no such file"},
		{"wait, malformed default file", malformed, "", "", []string{"wait", seg, "x"}, exitAbortRec, "config file"},
		{"wait, bad log level", "", "log-level: loud\n", "", []string{"wait", seg, "x"}, exitAbortRec, "--log-level"},
		{"fetch, --config missing", "", "", "", []string{"--config", absent, "fetch", seg, "x"}, exitAbortRec, "no such file"},
		{"fetch, bad duration", "", "retry-for: soon\n", "", []string{"fetch", seg, "x"}, exitAbortRec, "retry-for"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unsetConfigEnv(t)
			if tc.env != "" {
				t.Setenv("WALSHIP_CONFIG", tc.env)
			}
			def := tc.def
			if def == "" {
				def = absent
			}
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeConfig(t, tc.file)}, args...)
			}
			code, _, stderr := configRun(t, def, args...)
			if code != tc.want {
				t.Errorf("exit %d, want %d: %s", code, tc.want, stderr)
			}
			if !strings.Contains(stderr, tc.message) {
				t.Errorf("stderr %q does not mention %q", stderr, tc.message)
			}
		})
	}
}

func TestConfigUnknownKeyWarns(t *testing.T) {
	unsetConfigEnv(t)
	p := writeConfig(t, "archve: /srv/walship/main\ncompress: none\n")
	code, out, stderr := configRun(t, p, "probe")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "level=WARN") || !strings.Contains(stderr, "key=archve") {
		t.Errorf("stderr %q: want a warning about archve", stderr)
	}
	if !strings.Contains(out, "compress=none\n") {
		t.Errorf("got\n%s\nthe other keys should still apply", out)
	}
}

// TestConfigPush checks that a production command takes its settings from
// the file: push with only the archive in it, and the log level.
func TestConfigPush(t *testing.T) {
	unsetConfigEnv(t)
	arch, src := t.TempDir(), t.TempDir()
	name := "000000010000000000000003"
	p := filepath.Join(src, name)
	if err := os.WriteFile(p, segment(42, 3, 7), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, fmt.Sprintf("archive: %s\ncompress: none\nlog-level: warn\n", arch))
	code, _, stderr := configRun(t, cfg, "push", p, name)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got := listDir(t, filepath.Join(arch, "wal")); len(got) != 2 || got[0] != name {
		t.Errorf("archive holds %v, want [%s] (uncompressed, as the file says)", got, name)
	}
	if stderr != "" {
		t.Errorf("stderr %q: want no info logs, as the file says", stderr)
	}
}

// TestConfigCoversEveryFlag guards against a flag type configKindOf does
// not know, which the file could not set.
func TestConfigCoversEveryFlag(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	check := func(where string, flags []cli.Flag) {
		for _, f := range flags {
			if configKindOf(f) != 0 {
				continue
			}
			if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
				continue // internal
			}
			if cliOnly[f.Names()[0]] {
				continue
			}
			t.Errorf("%s: the config file cannot set --%s (%T)", where, f.Names()[0], f)
		}
	}
	check("walship", app.Flags)
	for _, c := range app.Commands {
		check(c.Name, c.Flags)
	}
	// One key means one thing to every command: kinds panics otherwise.
	(&configFile{app: app, all: func() []*cli.Command { return app.Commands }}).kinds()
}

// A config file cannot set --force, --dry-run or --json: they are meant for
// one call.
func TestConfigCannotForce(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	for _, c := range app.Commands {
		for _, f := range c.Flags {
			if configKindOf(f) != 0 && cliOnly[f.Names()[0]] {
				t.Errorf("%s: --%s can come from the config file", c.Name, f.Names()[0])
			}
		}
	}
}

// Hidden flags are internal (fetch's --prefetch-after runs the background
// prefetcher): a config file must not set them.
func TestConfigSkipsHiddenFlags(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	hidden := 0
	for _, c := range app.Commands {
		for _, f := range c.Flags {
			vf, ok := f.(cli.VisibleFlag)
			if !ok || vf.IsVisible() {
				continue
			}
			hidden++
			if configKindOf(f) != 0 {
				t.Errorf("%s: hidden --%s can come from the config file", c.Name, f.Names()[0])
			}
		}
	}
	if hidden == 0 {
		t.Error("no hidden flag found: the test checks nothing")
	}
}
