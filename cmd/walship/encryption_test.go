package main

import (
	"bytes"

	"encoding/json"
	"github.com/walship/walship/archive/crypt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// walshipCombined is walshipRun with stdout and stderr together: the
// encryption commands print their results on stdout.
func walshipCombined(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := run(append([]string{"walship"}, args...), &out, &out)
	return code, out.String()
}

func TestEncryptionCommands(t *testing.T) {
	dir := t.TempDir()
	arch := filepath.Join(dir, "archive")
	if err := os.Mkdir(arch, 0o750); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "a.key")
	code, out := walshipCombined(t, "encryption", "keygen", key)
	if code != 0 {
		t.Fatalf("keygen: exit %d\n%s", code, out)
	}
	recipient := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keygen wrote %v, %v; want mode 0600", fi, err)
	}
	key2 := filepath.Join(dir, "b.key")
	code, out = walshipCombined(t, "encryption", "keygen", key2)
	if code != 0 {
		t.Fatal(out)
	}
	recipient2 := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])

	for _, tc := range []struct {
		name string
		args []string
		code int
		says string
	}{
		{"keygen over an existing file", []string{"encryption", "keygen", key}, 2, "never overwrites"},
		{"add-key before init", []string{"encryption", "add-key", "--archive", arch, "-r", recipient}, 2, "encryption init first"},
		{"init without a key", []string{"encryption", "init", "--archive", arch}, 2, "needs a public key"},
		{"init with junk", []string{"encryption", "init", "--archive", arch, "-r", "age1nope"}, 2, "not an age public key"},
		{"init with a private key file", []string{"encryption", "init", "--archive", arch, "--recipients-file", key}, 0, "key set 1"},
		{"init twice", []string{"encryption", "init", "--archive", arch, "-r", recipient}, 2, "encrypted already"},
		{"retire an unknown key", []string{"encryption", "retire-key", "--archive", arch, "0123456789abcdef"}, 2, "no key of fingerprint"},
		{"retire the last key", []string{"encryption", "retire-key", "--archive", arch, fingerprintOf(recipient)}, 2, "leave no key"},
		{"add a key, retire the old", []string{"encryption", "add-key", "--archive", arch, "-r", recipient2, "--retire", fingerprintOf(recipient)}, 0, "key set 2"},
		{"rewrap without the key", []string{"encryption", "rewrap", "--archive", arch}, 0, "re-encrypted 0 files"},
		{"status with an argument", []string{"encryption", "status", "--archive", arch, "extra"}, 2, "takes no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := walshipCombined(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.says) {
				t.Errorf("walship %s: exit %d, want %d saying %q\n%s", strings.Join(tc.args, " "), code, tc.code, tc.says, out)
			}
		})
	}
	// A recipients file holding a private key line and nothing else is
	// refused (a keygen file works because of its "# public key:" line).
	bare := filepath.Join(dir, "bare.key")
	b, _ := os.ReadFile(key)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY") {
			lines = append(lines, l)
		}
	}
	os.WriteFile(bare, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	if code, out := walshipCombined(t, "encryption", "add-key", "--archive", arch, "--recipients-file", bare); code != 2 || !strings.Contains(out, "holds a private key") {
		t.Errorf("add-key from a bare private key file: exit %d\n%s", code, out)
	}
	code, out = walshipCombined(t, "encryption", "status", "--archive", arch, "--json")
	var st encStatus
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &st); code != 0 || err != nil {
		t.Fatalf("status --json: exit %d, %v\n%s", code, err, out)
	}
	if len(st.KeySets) != 2 || len(st.Active) != 1 || st.Active[0] != fingerprintOf(recipient2) {
		t.Errorf("status --json: key sets %d, active %v; want 2 sets, only %s", len(st.KeySets), st.Active, fingerprintOf(recipient2))
	}
	// An identity file others can read is refused, by every reader.
	os.Chmod(key, 0o644)
	if code, out := walshipCombined(t, "fetch", "--archive", arch, "--encryption-identity", key, "000000010000000000000001", filepath.Join(dir, "x")); code != 250 || !strings.Contains(out, "chmod 600") {
		t.Errorf("fetch with an identity file of mode 0644: exit %d, want 250 saying chmod 600\n%s", code, out)
	}
}

func fingerprintOf(recipient string) string { return crypt.Fingerprint(recipient) }
