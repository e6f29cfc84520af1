package waiter

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tricky cases were checked against PostgreSQL 15's own reading of
// them (postgres -C).
func TestParseServerConf(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []confLine
		err  bool
	}{
		{text: "", want: []confLine{}},
		{text: "# only a comment\n\n   \n", want: []confLine{}},
		{text: "a = 1", want: []confLine{{"a", "1", 1}}},
		{text: "a=1\n", want: []confLine{{"a", "1", 1}}},
		{text: "a 1\n", want: []confLine{{"a", "1", 1}}}, // no "="
		{text: "\n\nRecovery_Prefetch = OFF\n", want: []confLine{{"Recovery_Prefetch", "OFF", 3}}},
		{text: "a = 'off'  # was 'try'\n", want: []confLine{{"a", "off", 1}}},
		{text: "a = 'it''s # no comment'\n", want: []confLine{{"a", "it's # no comment", 1}}},
		{text: `a = 'it\'s'`, want: []confLine{{"a", "it's", 1}}},
		{text: `a = 'tab\there\101\\'`, want: []confLine{{"a", "tab\there" + "A" + `\`, 1}}},
		{text: `a = 'cut\0here'`, want: []confLine{{"a", "cut", 1}}}, // a C string ends at NUL
		{text: "a = ''", want: []confLine{{"a", "", 1}}},
		{text: "a = x/y:z-1.b\n", want: []confLine{{"a", "x/y:z-1.b", 1}}},
		{text: "a = 10MB\nb = -1.5e3\nc = 0x1F\nd = .5\n",
			want: []confLine{{"a", "10MB", 1}, {"b", "-1.5e3", 2}, {"c", "0x1F", 3}, {"d", ".5", 4}}},
		{text: "ext.name = on\r\nb = 2\r\n", want: []confLine{{"ext.name", "on", 1}, {"b", "2", 2}}},
		{text: "include 'a.conf'\ninclude_dir = 'conf.d'", want: []confLine{{"include", "a.conf", 1}, {"include_dir", "conf.d", 2}}},
		{text: "include_dir = conf.d", err: true}, // conf.d is a qualified name, no value
		{text: "x.a = a.b.c", want: []confLine{{"x.a", "a.b.c", 1}}},
		{text: "x.a = -.", want: []confLine{{"x.a", "-.", 1}}},
		{text: "x.a = 0x1Fg", want: []confLine{{"x.a", "0x1Fg", 1}}},
		{text: "x.a = 'x'#c", want: []confLine{{"x.a", "x", 1}}},
		{text: "x.a = \xc3\xa9t\xc3\xa9", want: []confLine{{"x.a", "\xc3\xa9t\xc3\xa9", 1}}},
		{text: `x.a = 'a\b'`, want: []confLine{{"x.a", "a\b", 1}}},
		{text: "x.a = 0X1F", err: true},
		{text: "x.a = 1.5.5", err: true},
		{text: "x.a = 12abc34", err: true},
		{text: "x.a = on;", err: true},
		{text: "x.a = +", err: true},
		{text: `x.a = 'a\'' b'`, err: true},    // the string 'a\'', then b
		{text: "a = \"off\"", err: true},       // double quotes are not quotes
		{text: "a = off extra", err: true},     // one value a line
		{text: "a =", err: true},               // no value
		{text: "a = = 1", err: true},           // one "="
		{text: "= 1", err: true},               // no name
		{text: "1 = 2", err: true},             // a number is no name
		{text: "'a' = 2", err: true},           // nor a string
		{text: "a = b.c", err: true},           // a qualified name is no value
		{text: "a = /etc/x", err: true},        // an unquoted value starts with a letter
		{text: "a = 'unterminated", err: true}, // no closing quote
		{text: "a = 'two\nlines'", err: true},
		{text: "a = 'x'''\n", want: []confLine{{"a", "x'", 1}}},
		{text: "a = 'x''\n", err: true}, // 'x' and a stray quote
		{text: "a = 1\nb = 'x' y\n", err: true},
		{text: "a = 1e5", err: true}, // "1e" (a unit) then 5
	} {
		got, err := parseServerConf([]byte(tc.text))
		if tc.err {
			if err == nil {
				t.Errorf("%q: got %v, want a syntax error", tc.text, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %v, %v; want %v", tc.text, got, err, tc.want)
		}
	}
}

// fakeServer is a data directory with the files a running postmaster
// leaves: PG_VERSION, postmaster.pid, postmaster.opts, postgresql.conf.
type fakeServer struct {
	t        testing.TB
	dir, etc string // the data directory; a configuration directory elsewhere
}

func newFakeServer(t testing.TB, version string, args ...string) *fakeServer {
	t.Helper()
	s := &fakeServer{t: t, dir: t.TempDir(), etc: t.TempDir()}
	if err := os.Mkdir(filepath.Join(s.dir, "pg_wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	s.write("PG_VERSION", version+"\n")
	s.start(4242, 1700000000)
	s.opts(args...)
	s.write("postgresql.conf", "# PostgreSQL's sample, with every setting commented out\n#recovery_prefetch = try\n")
	return s
}

// expand replaces $DATA and $ETC with the directories.
func (s *fakeServer) expand(v string) string {
	return strings.NewReplacer("$DATA", s.dir, "$ETC", s.etc).Replace(v)
}

// write writes a file at a path relative to the data directory, or at
// $ETC/... .
func (s *fakeServer) write(name, content string) {
	s.t.Helper()
	path := s.expand(name)
	if !filepath.IsAbs(path) {
		path = filepath.Join(s.dir, path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s.expand(content)), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// start writes postmaster.pid as postmaster pid, started at the epoch
// second started, writes it.
func (s *fakeServer) start(pid, started int) {
	s.write("postmaster.pid", strings.Join([]string{
		strconv.Itoa(pid), s.dir, strconv.Itoa(started), "5432", "/var/run/postgresql", "*", "  5432001         0", "ready   ", ""}, "\n"))
}

// opts writes postmaster.opts as pg_ctl -D $DATA -o "args" makes it.
func (s *fakeServer) opts(args ...string) {
	line := `/usr/lib/postgresql/15/bin/postgres "-D" "` + s.dir + `"`
	for _, a := range args {
		line += ` "` + s.expand(a) + `"`
	}
	s.write("postmaster.opts", line+"\n")
}

func (s *fakeServer) remove(name string) {
	s.t.Helper()
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
		s.t.Fatal(err)
	}
}

func (s *fakeServer) marker() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "pg_wal", prefetchMarker))
	return string(b)
}

func TestServerConfEffective(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string          // postmaster.opts, after -D $DATA
		files  map[string]string // relative to the data directory, or $ETC/...
		want   string            // the effective recovery_prefetch
		source string            // a part of its source
		err    string            // a part of the error, if one is wanted
		setup  func(s *fakeServer)
	}{
		{name: "default", want: "try", source: sourceDefault},
		{name: "name value", files: map[string]string{"postgresql.conf": "recovery_prefetch off\n"},
			want: "off", source: "postgresql.conf:1"},
		{name: "names ignore case", files: map[string]string{"postgresql.conf": "RECOVERY_prefetch = 'Off'\n"},
			want: "Off"},
		{name: "last wins", files: map[string]string{"postgresql.conf": "recovery_prefetch = off\n#\nrecovery_prefetch = on\n"},
			want: "on", source: "postgresql.conf:3"},
		{name: "include relative to the including file", files: map[string]string{
			"postgresql.conf":          "include 'conf.d/standby.conf'\n",
			"conf.d/standby.conf":      "include = 'prefetch.conf'\n",
			"conf.d/prefetch.conf":     "recovery_prefetch = off\n",
			"prefetch.conf":            "recovery_prefetch = on\n", // not the one meant
			"conf.d/unrelated.conf.in": "",
		}, want: "off", source: filepath.Join("conf.d", "prefetch.conf") + ":1"},
		{name: "include_dir in name order", files: map[string]string{
			"postgresql.conf":       "include_dir = 'conf.d'\n",
			"conf.d/10-early.conf":  "recovery_prefetch = off\n",
			"conf.d/20-late.conf":   "recovery_prefetch = on\n",
			"conf.d/.99-dot.conf":   "recovery_prefetch = off\n", // hidden
			"conf.d/99-x.conf.bak":  "recovery_prefetch = off\n", // not .conf
			"conf.d/99-notes.txt":   "recovery_prefetch = off\n",
			"conf.d/zz.conf/a.conf": "recovery_prefetch = off\n", // a directory
			"conf.d/.conf":          "recovery_prefetch = off\n",
		}, want: "on", source: "20-late.conf:1"},
		{name: "include_dir sorts bytes", files: map[string]string{
			"postgresql.conf": "include_dir 'conf.d'\n",
			"conf.d/a.conf":   "recovery_prefetch = off\n",
			"conf.d/B.conf":   "recovery_prefetch = on\n", // "B" < "a"
		}, want: "off"},
		{name: "include order", files: map[string]string{
			"postgresql.conf": "recovery_prefetch = on\ninclude 'a.conf'\n",
			"a.conf":          "recovery_prefetch = off\n",
		}, want: "off"},
		{name: "setting after include", files: map[string]string{
			"postgresql.conf": "include 'a.conf'\nrecovery_prefetch = on\n",
			"a.conf":          "recovery_prefetch = off\n",
		}, want: "on"},
		{name: "include loop", files: map[string]string{
			"postgresql.conf": "include 'a.conf'\n",
			"a.conf":          "include 'b.conf'\n",
			"b.conf":          "include 'a.conf'\n",
		}, err: "nested deeper than 10"},
		{name: "include of itself", files: map[string]string{"postgresql.conf": "include 'postgresql.conf'\n"}, err: "includes itself"},
		{name: "include_dir of its own directory", files: map[string]string{"postgresql.conf": "include_dir '.'\n"}, err: "includes itself"},
		{name: "include_dir loop", files: map[string]string{
			"postgresql.conf": "include_dir 'd'\n",
			"d/a.conf":        "include_dir '.'\n",
		}, err: "includes itself"},
		{name: "nesting of 10 is allowed", files: nestedIncludes(10), want: "off"},
		{name: "nesting of 11 is not", files: nestedIncludes(11), err: "nested deeper than 10"},
		{name: "missing include_if_exists", files: map[string]string{
			"postgresql.conf": "include_if_exists 'missing.conf'\nrecovery_prefetch = off\n",
		}, want: "off"},
		{name: "missing include", files: map[string]string{"postgresql.conf": "include 'missing.conf'\n"}, err: "no such file"},
		{name: "missing include_dir", files: map[string]string{"postgresql.conf": "include_dir 'missing'\n"}, err: "no such file"},
		{name: "empty include", files: map[string]string{"postgresql.conf": "include ''\n"}, err: "empty configuration file name"},
		{name: "auto.conf wins", files: map[string]string{
			"postgresql.conf":      "recovery_prefetch = on\n",
			"postgresql.auto.conf": "# Do not edit this file manually!\nrecovery_prefetch = 'off'\n",
		}, want: "off", source: "postgresql.auto.conf:2"},
		{name: "command line wins", args: []string{"-c", "recovery_prefetch=off"}, files: map[string]string{
			"postgresql.auto.conf": "recovery_prefetch = 'on'\n",
		}, want: "off", source: sourceCommandLine},
		{name: "command line, attached", args: []string{"-crecovery_prefetch=on"}, want: "on", source: sourceCommandLine},
		{name: "command line, long", args: []string{"--recovery-prefetch=off"}, want: "off", source: sourceCommandLine},
		{name: "command line, later wins", args: []string{"-c", "recovery_prefetch=off", "-c", "recovery_prefetch=on"}, want: "on"},
		{name: "command line, an option's argument", args: []string{"-B", "-c", "recovery_prefetch=off"}, want: "try"},
		{name: "config_file (Debian)", args: []string{"-c", "config_file=$ETC/postgresql.conf"}, files: map[string]string{
			"$ETC/postgresql.conf":       "data_directory = '$DATA'\ninclude_dir 'conf.d'\n",
			"$ETC/conf.d/standby.conf":   "recovery_prefetch = off\n",
			"postgresql.conf":            "recovery_prefetch = on\n", // not the server's
			"postgresql.auto.conf":       "# nothing\n",
			"$ETC/postgresql.auto.conf":  "recovery_prefetch = on\n", // not read: auto.conf is in the data directory
			"$ETC/conf.d/unrelated.conf": "port = 5433\n",
		}, want: "off", source: "standby.conf:1"},
		{name: "--config-file", args: []string{"--config-file=$ETC/postgresql.conf"}, files: map[string]string{
			"$ETC/postgresql.conf": "recovery_prefetch = off\n",
		}, want: "off"},
		{name: "-D names a configuration directory", args: []string{"-D", "$ETC"}, files: map[string]string{
			"$ETC/postgresql.conf": "recovery_prefetch = off\n",
		}, want: "off"},
		{name: "relative config_file", args: []string{"-c", "config_file=postgresql.conf"}, err: "relative"},
		{name: "syntax error", files: map[string]string{"postgresql.conf": "recovery_prefetch = off\nshared_buffers = 1 GB\n"}, err: "syntax error in line 2"},
		{name: "syntax error in auto.conf", files: map[string]string{"postgresql.auto.conf": "recovery_prefetch = 'off\n"}, err: "postgresql.auto.conf: syntax error"},
		{name: "missing postgresql.conf", setup: func(s *fakeServer) { s.remove("postgresql.conf") }, err: "no such file"},
		{name: "postgresql.conf is a directory", setup: func(s *fakeServer) {
			s.remove("postgresql.conf")
			s.write("postgresql.conf/x.conf", "")
		}, err: "not a regular file"},
		{name: "missing postmaster.opts", setup: func(s *fakeServer) { s.remove("postmaster.opts") }, err: "postmaster.opts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFakeServer(t, "15", tc.args...)
			for name, content := range tc.files {
				s.write(name, content)
			}
			if tc.setup != nil {
				tc.setup(s)
			}
			conf, err := readServerConf(s.dir)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := conf.effective("recovery_prefetch", "try")
			if got.Value != tc.want || !strings.Contains(got.Source, tc.source) {
				t.Errorf("got %q from %s, want %q from %s", got.Value, got.Source, tc.want, tc.source)
			}
		})
	}
}

// nestedIncludes returns files whose postgresql.conf includes a chain of n
// files, the last of which sets recovery_prefetch = off.
func nestedIncludes(n int) map[string]string {
	files := map[string]string{"postgresql.conf": "include 'n1.conf'\n"}
	for i := 1; i < n; i++ {
		files["n"+strconv.Itoa(i)+".conf"] = "include 'n" + strconv.Itoa(i+1) + ".conf'\n"
	}
	files["n"+strconv.Itoa(n)+".conf"] = "recovery_prefetch = off\n"
	return files
}

// A FIFO named by an include must not block the restore (a plain open
// would wait for a writer).
func TestServerConfFIFO(t *testing.T) {
	s := newFakeServer(t, "15")
	s.write("postgresql.conf", "include 'fifo.conf'\n")
	if err := syscall.Mkfifo(filepath.Join(s.dir, "fifo.conf"), 0o600); err != nil {
		t.Skip(err)
	}
	done := make(chan error, 1)
	go func() { _, err := readServerConf(s.dir); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a FIFO read as a configuration file; want an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a configuration that includes a FIFO hangs")
	}
}

func TestRecoveryPrefetchDecision(t *testing.T) {
	for _, tc := range []struct {
		conf string
		on   bool
		err  bool
	}{
		{conf: "", on: true}, // the default, try
		{conf: "recovery_prefetch = try", on: true},
		{conf: "recovery_prefetch = on", on: true},
		{conf: "recovery_prefetch = off"},
		{conf: "recovery_prefetch = OFF"},
		{conf: "recovery_prefetch = false"},
		{conf: "recovery_prefetch = no"},
		{conf: "recovery_prefetch = 0"},
		{conf: "recovery_prefetch = 'yes'", on: true},
		{conf: "recovery_prefetch = 1", on: true},
		{conf: "recovery_prefetch = true", on: true},
		{conf: "recovery_prefetch = maybe", err: true},
		{conf: "recovery_prefetch = ' off'", err: true},
		{conf: "maintenance_io_concurrency = 0"}, // RecoveryPrefetchEnabled is false
		{conf: "maintenance_io_concurrency = 0x0"},
		{conf: "maintenance_io_concurrency = 16", on: true},
		{conf: "maintenance_io_concurrency = lots", err: true},
		{conf: "recovery_prefetch = off\nmaintenance_io_concurrency = lots"}, // off decides
	} {
		s := newFakeServer(t, "15")
		s.write("postgresql.conf", tc.conf+"\n")
		on, src, err := recoveryPrefetch(s.dir)
		if on != tc.on || (err != nil) != tc.err {
			t.Errorf("%q: on %v (%+v), error %v; want on %v, error %v", tc.conf, on, src, err, tc.on, tc.err)
		}
	}
}

func TestGUCInt(t *testing.T) {
	for _, tc := range []struct {
		v  string
		n  int64
		ok bool
	}{
		{"0", 0, true}, {"10", 10, true}, {" 7 ", 7, true}, {"-0", 0, true}, {"+3", 3, true},
		{"0x1f", 31, true}, {"0X0", 0, true}, {"010", 8, true}, {"00", 0, true},
		{"0.4", 0, true}, {"0.5", 0, true}, {"1.5", 2, true}, {".5", 0, true}, {"1e1", 10, true}, {"5.", 5, true},
		{"", 0, false}, {"abc", 0, false}, {"08", 0, false}, {"++1", 0, false}, {"0x", 0, false}, {"1_0", 0, false},
		{"0x-1", 0, false}, {"1e", 0, false}, {".", 0, false}, {"10kB", 0, false}, {"1e99", 0, false}, {"inf", 0, false},
	} {
		n, ok := gucInt(tc.v)
		if n != tc.n || ok != tc.ok {
			t.Errorf("gucInt(%q) = %d, %v; want %d, %v", tc.v, n, ok, tc.n, tc.ok)
		}
	}
}

func TestPostmasterOpts(t *testing.T) {
	opts := `/usr/lib/postgresql/15/bin/postgres "-D" "/var/lib/postgresql/15/main" "-c" "config_file=/etc/postgresql/15/main/postgresql.conf"` + "\n"
	args := parsePostmasterOpts([]byte(opts))
	want := []string{"-D", "/var/lib/postgresql/15/main", "-c", "config_file=/etc/postgresql/15/main/postgresql.conf"}
	if !slices.Equal(args, want) {
		t.Fatalf("got %q, want %q", args, want)
	}
	set, dir := postmasterSettings(args)
	if dir != want[1] || set["config_file"] != "/etc/postgresql/15/main/postgresql.conf" {
		t.Errorf("got %v, -D %q", set, dir)
	}
	if args := parsePostmasterOpts([]byte("/usr/lib/postgresql/15/bin/postgres\n")); len(args) != 0 {
		t.Errorf("no arguments: got %q", args)
	}
}

// logs returns a logger at debug level and what it wrote.
func logs() (*slog.Logger, *bytes.Buffer) {
	var b bytes.Buffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}

func warnings(b *bytes.Buffer) int { return strings.Count(b.String(), "level=WARN") }

func TestCheckRecoveryPrefetchOncePerStart(t *testing.T) {
	s := newFakeServer(t, "15")
	logger, out := logs()
	CheckRecoveryPrefetch(s.dir, logger)
	if warnings(out) != 1 {
		t.Fatalf("logged %q; want one warning", out)
	}
	for _, fix := range []string{"recovery_prefetch = off", "postgresql.conf", "ALTER SYSTEM SET recovery_prefetch = off", "reload"} {
		if !strings.Contains(out.String(), fix) {
			t.Errorf("warning %q does not name the fix: %q", out, fix)
		}
	}
	if got, want := s.marker(), "4242\n1700000000\nwarned\n"; got != want {
		t.Errorf("marker %q, want %q", got, want)
	}

	// The next segment of the same start: nothing at all.
	out.Reset()
	CheckRecoveryPrefetch(s.dir, logger)
	if out.Len() != 0 {
		t.Errorf("second call of the same start logged %q; want nothing", out)
	}

	// A restart, same pid: checked again.
	s.start(4242, 1700000100)
	CheckRecoveryPrefetch(s.dir, logger)
	if warnings(out) != 1 {
		t.Errorf("after a restart logged %q; want the warning again", out)
	}

	// Fixed and restarted: no warning, and remembered.
	out.Reset()
	s.write("postgresql.conf", "recovery_prefetch = off\n")
	s.start(5151, 1700000200)
	CheckRecoveryPrefetch(s.dir, logger)
	CheckRecoveryPrefetch(s.dir, logger)
	if warnings(out) != 0 {
		t.Errorf("with recovery_prefetch = off logged %q; want no warning", out)
	}
	if got, want := s.marker(), "5151\n1700000200\noff\n"; got != want {
		t.Errorf("marker %q, want %q", got, want)
	}
}

func TestCheckRecoveryPrefetchCurrentDirectory(t *testing.T) {
	s := newFakeServer(t, "16")
	t.Chdir(s.dir)
	logger, out := logs()
	CheckRecoveryPrefetch("", logger)
	if warnings(out) != 1 {
		t.Errorf("pgdata \"\" in the data directory: logged %q; want one warning", out)
	}
}

func TestCheckRecoveryPrefetchVersions(t *testing.T) {
	for _, tc := range []struct {
		version string
		warn    bool
	}{
		{"9.6", false}, {"13", false}, {"14", false}, {"15", true}, {"16", true}, {"18", true}, {"junk", false},
	} {
		s := newFakeServer(t, tc.version)
		logger, out := logs()
		CheckRecoveryPrefetch(s.dir, logger)
		if got := warnings(out) == 1; got != tc.warn {
			t.Errorf("PG_VERSION %s: logged %q; want a warning: %v", tc.version, out, tc.warn)
		}
		if !tc.warn && s.marker() != "" {
			t.Errorf("PG_VERSION %s: wrote marker %q; want none", tc.version, s.marker())
		}
	}
}

func TestCheckRecoveryPrefetchCommandLine(t *testing.T) {
	s := newFakeServer(t, "15", "-c", "recovery_prefetch=on")
	s.write("postgresql.conf", "recovery_prefetch = off\n")
	logger, out := logs()
	CheckRecoveryPrefetch(s.dir, logger)
	if warnings(out) != 1 || !strings.Contains(out.String(), "-c recovery_prefetch=off") {
		t.Errorf("logged %q; want a warning naming -c recovery_prefetch=off", out)
	}
}

// What the check cannot read makes it quiet, never a failure.
func TestCheckRecoveryPrefetchCannotTell(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(s *fakeServer)
		debug string // in the debug log
	}{
		{"no configuration file", func(s *fakeServer) { s.remove("postgresql.conf") }, "cannot tell"},
		{"syntax error", func(s *fakeServer) { s.write("postgresql.conf", "recovery_prefetch = 'off\n") }, "cannot tell"},
		{"include loop", func(s *fakeServer) { s.write("postgresql.conf", "include 'postgresql.conf'\n") }, "cannot tell"},
		{"no postmaster.pid", func(s *fakeServer) { s.remove("postmaster.pid") }, "no running postmaster"},
		{"junk postmaster.pid", func(s *fakeServer) { s.write("postmaster.pid", "x\n") }, "no running postmaster"},
		{"no PG_VERSION", func(s *fakeServer) { s.remove("PG_VERSION") }, "no server version"},
	} {
		s := newFakeServer(t, "15")
		tc.setup(s)
		logger, out := logs()
		CheckRecoveryPrefetch(s.dir, logger)
		if warnings(out) != 0 || !strings.Contains(out.String(), tc.debug) {
			t.Errorf("%s: logged %q; want no warning and %q at debug level", tc.name, out, tc.debug)
		}
	}
	logger, out := logs()
	CheckRecoveryPrefetch(filepath.Join(t.TempDir(), "missing"), logger)
	if warnings(out) != 0 {
		t.Errorf("no data directory: logged %q; want no warning", out)
	}
}

// A marker that cannot be written is a debug message; the check then runs
// again at the next call.
func TestCheckRecoveryPrefetchMarkerUnwritable(t *testing.T) {
	s := newFakeServer(t, "15")
	s.remove("pg_wal")
	logger, out := logs()
	CheckRecoveryPrefetch(s.dir, logger)
	CheckRecoveryPrefetch(s.dir, logger)
	if warnings(out) != 2 || !strings.Contains(out.String(), "cannot remember") {
		t.Errorf("logged %q; want a warning at each call and a debug message about the marker", out)
	}
}

// The calls after the first of a start must cost well under a millisecond:
// wait runs once per segment.
func BenchmarkCheckRecoveryPrefetchChecked(b *testing.B) {
	s := newFakeServer(b, "15")
	logger, _ := logs()
	CheckRecoveryPrefetch(s.dir, logger)
	for b.Loop() {
		CheckRecoveryPrefetch(s.dir, logger)
	}
}

func FuzzParseServerConf(f *testing.F) {
	for _, seed := range []string{
		"recovery_prefetch = off\n",
		"a 'it''s'\ninclude_dir = 'conf.d'\n# c\n",
		`a = 'x\'y\101\0'` + "\r\n",
		"ext.x = -1.5e3kB\nb = 0x1Fg\nc = x/y:z\n",
		"a = 'unterminated\n= 1\n",
		`/usr/lib/postgresql/15/bin/postgres "-D" "/d" "-c" "recovery_prefetch=off" "--config-file=/e"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, err := parseServerConf(b)
		if err == nil {
			for _, l := range lines {
				if l.name == "" || l.line < 1 || strings.ContainsRune(l.value, 0) {
					t.Fatalf("parsed %+v from %q", l, b)
				}
				// Every value, quoted, reads back as itself.
				back, err := parseServerConf([]byte("x = " + quoteConf(l.value)))
				if err != nil || len(back) != 1 || back[0].value != l.value {
					t.Fatalf("value %q quoted as %s reads back as %v, %v", l.value, quoteConf(l.value), back, err)
				}
			}
		}
		postmasterSettings(parsePostmasterOpts(b))
		gucInt(string(b))
		prefetchEnum(string(b))
	})
}

// quoteConf quotes a value for a configuration file.
func quoteConf(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", "''", "\n", `\n`).Replace(v) + "'"
}
