package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestCleanupCommand(t *testing.T) {
	arch, src := t.TempDir(), t.TempDir()
	var names []string
	for seg := uint64(3); seg <= 6; seg++ {
		name := "00000001000000000000000" + string(rune('0'+seg))
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, segment(42, seg, 7), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, stderr := walshipRun(t, "push", "--archive", arch, p, name); code != 0 {
			t.Fatalf("push %s: exit %d, %s", name, code, stderr)
		}
		names = append(names, name+".zst")
	}
	walDir := filepath.Join(arch, "wal")

	for _, bad := range []string{"00000001.history", "../000000010000000000000005", "junk"} {
		if code, _ := walshipRun(t, "cleanup", "--archive", arch, bad); code != exitUsage {
			t.Errorf("cleanup %q: exit %d, want %d", bad, code, exitUsage)
		}
	}
	if code, _ := walshipRun(t, "cleanup", "--archive", arch); code != exitUsage {
		t.Errorf("cleanup without %%r: exit %d, want %d", code, exitUsage)
	}
	if got := listDir(t, walDir); !slices.Equal(got, names) {
		t.Fatalf("after refused calls the archive holds %v, want %v", got, names)
	}

	var out, errb bytes.Buffer
	code := run([]string{"walship", "cleanup", "--archive", arch, "--dry-run", "--json", "000000010000000000000005"}, &out, &errb)
	if code != 0 {
		t.Fatalf("cleanup --dry-run: exit %d, %s", code, errb.String())
	}
	var res cleanupResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("--json output %q: %v", out.String(), err)
	}
	if want := names[:2]; !slices.Equal(res.Removed, want) || !res.DryRun {
		t.Errorf("--dry-run --json: got %+v, want removed %v and dry_run", res, want)
	}
	if got := listDir(t, walDir); !slices.Equal(got, names) {
		t.Fatalf("--dry-run removed files: left %v", got)
	}

	if code, stderr := walshipRun(t, "cleanup", "--archive", arch, "000000010000000000000005"); code != 0 {
		t.Fatalf("cleanup: exit %d, %s", code, stderr)
	}
	if got, want := listDir(t, walDir), names[2:]; !slices.Equal(got, want) {
		t.Errorf("after cleanup the archive holds %v, want %v", got, want)
	}
}
