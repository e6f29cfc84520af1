package backup

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, conf, shell string }{
		{"/usr/bin/walship", `'/usr/bin/walship'`, "/usr/bin/walship"},
		{"it's", `'it''s'`, `'it'\''s'`},
		{`C:\x`, `'C:\\x'`, `'C:\x'`},
		{"/srv/50%", `'/srv/50%'`, "/srv/50%%"},
		{"/a b", `'/a b'`, `'/a b'`},
		{"", `''`, `''`},
	} {
		if got := ConfQuote(tc.in); got != tc.conf {
			t.Errorf("ConfQuote(%q) = %s, want %s", tc.in, got, tc.conf)
		}
		if got := ShellQuote(tc.in); got != tc.shell {
			t.Errorf("ShellQuote(%q) = %s, want %s", tc.in, got, tc.shell)
		}
	}
}

func TestRecoverySettings(t *testing.T) {
	tg, err := NewTarget(TargetXID, "1234", "promote", "current")
	if err != nil {
		t.Fatal(err)
	}
	lines := recoverySettings(Meta{ID: "20261122T011500Z"}, RestoreOptions{RestoreCommand: "walship fetch %f %p", Target: tg}, time.Now())
	got := strings.Join(lines[2:], "\n")
	want := `restore_command = 'walship fetch %f %p'
recovery_end_command = ''
archive_cleanup_command = ''
recovery_target = ''
recovery_target_lsn = ''
recovery_target_name = ''
recovery_target_time = ''
recovery_target_xid = '1234'
recovery_target_action = 'promote'
recovery_target_timeline = 'current'`
	if got != want {
		t.Errorf("settings:\n%s\nwant:\n%s", got, want)
	}
	// The chosen target comes after the emptied ones: the server refuses
	// a second target as it assigns them in order.
	tg, _ = NewTarget(TargetImmediate, "", "", "")
	lines = recoverySettings(Meta{}, RestoreOptions{Target: tg}, time.Now())
	if last := lines[len(lines)-1]; last != "recovery_target = 'immediate'" {
		t.Errorf("last line %q, want the immediate target", last)
	}
	lines = recoverySettings(Meta{PGVersion: 150004}, RestoreOptions{Standby: true}, time.Now())
	if last := lines[len(lines)-1]; last != "recovery_prefetch = off" {
		t.Errorf("standby: last line %q, want recovery_prefetch = off", last)
	}
}

func TestWriteRecovery(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "postgresql.auto.conf"), []byte("primary_conninfo = 'x'"), 0o600)
	os.WriteFile(filepath.Join(dir, "standby.signal"), nil, 0o600)
	if err := writeRecovery(dir, Meta{ID: "20261122T011500Z"}, RestoreOptions{RestoreCommand: "fetch"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "postgresql.auto.conf"))
	if !strings.HasPrefix(string(b), "primary_conninfo = 'x'\n# Recovery settings") || !strings.Contains(string(b), "\nrestore_command = 'fetch'\n") {
		t.Errorf("postgresql.auto.conf:\n%s", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "standby.signal")); !os.IsNotExist(err) {
		t.Errorf("standby.signal: got %v, want it removed", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "recovery.signal")); err != nil {
		t.Errorf("recovery.signal: %v", err)
	}
}

// Each --signal leaves its signal file and only that one.
func TestWriteRecoverySignal(t *testing.T) {
	for _, tc := range []struct {
		signal Signal
		want   string
	}{
		{SignalRecovery, "recovery.signal"}, {SignalStandby, "standby.signal"}, {SignalNone, ""},
	} {
		dir := t.TempDir()
		for _, f := range []string{"recovery.signal", "standby.signal"} {
			os.WriteFile(filepath.Join(dir, f), nil, 0o600)
		}
		if err := writeRecovery(dir, Meta{ID: "20261122T011500Z"}, RestoreOptions{RestoreCommand: "fetch", Signal: tc.signal}); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"recovery.signal", "standby.signal"} {
			_, err := os.Stat(filepath.Join(dir, f))
			if got := err == nil; got != (f == tc.want) {
				t.Errorf("--signal %s: %s there: %v, want %v", tc.signal, f, got, f == tc.want)
			}
		}
	}
	if _, err := ParseSignal("standbys"); err == nil {
		t.Error("ParseSignal(standbys): no error")
	}
}

func TestEntryPath(t *testing.T) {
	for in, want := range map[string]string{
		"base/1/1259":              "base/1/1259",
		"./pg_wal/archive_status/": "pg_wal/archive_status",
		"global/":                  "global",
		"../etc/passwd":            "",
		"/etc/passwd":              "",
		"a/../../b":                "",
		"a//b":                     "",
		"..":                       "",
		"":                         "",
		`a\b`:                      "",
	} {
		got, err := entryPath(in)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("entryPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// pgConfString reads a quoted postgresql.conf value as the server's lexer
// (guc-file.l: STRING and DeescapeQuotedString) does, and reports whether
// it is one valid string token.
func pgConfString(q string) (string, bool) {
	if len(q) < 2 || q[0] != '\'' || q[len(q)-1] != '\'' {
		return "", false
	}
	body := q[1 : len(q)-1]
	var out []byte
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c == '\n':
			return "", false // a string cannot span lines
		case c == '\'':
			if i+1 >= len(body) || body[i+1] != '\'' {
				return "", false // the token would end here
			}
			out = append(out, '\'')
			i++
		case c == '\\':
			if i+1 >= len(body) {
				return "", false
			}
			i++
			switch e := body[i]; e {
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case '0', '1', '2', '3', '4', '5', '6', '7':
				v := int(e - '0')
				for k := 0; k < 2 && i+1 < len(body) && body[i+1] >= '0' && body[i+1] <= '7'; k++ {
					i++
					v = v*8 + int(body[i]-'0')
				}
				out = append(out, byte(v))
			default:
				out = append(out, e)
			}
		default:
			out = append(out, c)
		}
	}
	return string(out), true
}

// Whatever a target name, label or path holds, the server reads back from
// postgresql.auto.conf exactly what ConfQuote was given.
func FuzzConfQuote(f *testing.F) {
	for _, s := range []string{"", "plain", "it's", `C:\dir`, "two\nlines", "cr\rlf", "tab\there", `\n literally`, "''", `\'`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := pgConfString(ConfQuote(s))
		if !ok || got != s {
			t.Fatalf("ConfQuote(%q) = %s, which the server reads as %q (valid %t)", s, ConfQuote(s), got, ok)
		}
	})
}

// ShellQuote's word, after the server turns %% back into % in
// restore_command, is read by sh as exactly the string quoted.
func FuzzShellQuote(f *testing.F) {
	for _, s := range []string{"", "/srv/walship/main", "it's", "a b", "100%", "$HOME", "`x`", "--x", "*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsRune(s, 0) {
			t.Skip("an argument cannot hold NUL")
		}
		word := strings.ReplaceAll(ShellQuote(s), "%%", "%")
		out, err := exec.Command("sh", "-c", "printf %s "+word).Output()
		if err != nil || string(out) != s {
			t.Fatalf("ShellQuote(%q) = %s: sh read %q (%v)", s, ShellQuote(s), out, err)
		}
	})
}

// Restores of restores do not pile up walship's lines in
// postgresql.auto.conf: the second restore's block replaces the first's,
// and what the user and ALTER SYSTEM wrote stays.
func TestWriteRecoveryGenerations(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "postgresql.auto.conf")
	os.WriteFile(conf, []byte("# Do not edit this file manually!\nwork_mem = '8MB'\nrecovery_prefetch=off\n"), 0o600)
	first := RestoreOptions{RestoreCommand: "fetch one", Target: Target{Kind: "time", Value: "2026-12-01 18:40:50+00", Action: "promote"}}
	if err := writeRecovery(dir, Meta{ID: "20261122T011500Z"}, first); err != nil {
		t.Fatal(err)
	}
	second := RestoreOptions{RestoreCommand: "fetch two", Target: Target{Timeline: "latest"}}
	for range 3 {
		if err := writeRecovery(dir, Meta{ID: "20261123T011500Z"}, second); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(conf)
	got := string(b)
	for _, want := range []string{"# Do not edit this file manually!\n", "work_mem = '8MB'\n", "recovery_prefetch=off\n",
		"restore_command = 'fetch two'\n", "recovery_target_time = ''\n", "recovery_target_timeline = 'latest'\n"} {
		if strings.Count(got, want) != 1 {
			t.Errorf("%q appears %d times, want once:\n%s", want, strings.Count(got, want), got)
		}
	}
	for _, gone := range []string{"fetch one", "20261122T011500Z", "18:40:50", "recovery_target_action"} {
		if strings.Contains(got, gone) {
			t.Errorf("the first restore's %q is still there:\n%s", gone, got)
		}
	}
	if n := strings.Count(got, "# Recovery settings written by walship"); n != 1 {
		t.Errorf("%d walship blocks, want 1:\n%s", n, got)
	}
}

func TestSettingName(t *testing.T) {
	for line, want := range map[string]string{
		"restore_command = 'x'": "restore_command", "Restore_Command='x'": "restore_command",
		"  recovery_target_time\t'2026'": "recovery_target_time", "# restore_command = 'x'": "",
		"": "", "restore_command": "", "restore_command # x": "", "a.b = 1": "a.b", "include 'x'": "include",
		"restore_command-x = 1": "",
	} {
		if got := settingName(line); got != want {
			t.Errorf("settingName(%q) = %q, want %q", line, got, want)
		}
	}
}
