package main

import (
	"os/exec"
	"strings"
	"testing"
)

// PostgreSQL starts walship once per WAL file, so what the binary links is
// paid at every call, before main: package initialisations, and the
// binary's size (BENCHMARKS.md, "Start-up"). These packages were taken out
// for that reason; each must stay out.
func TestStartupDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		deps[p] = true
	}
	if !deps["github.com/walship/walship/internal/zstd"] || !deps["github.com/walship/walship/internal/cli"] {
		t.Fatalf("go list -deps did not list walship's own packages:\n%s", out)
	}
	for p, why := range map[string]string{
		"text/template":                                  "its MethodByName keeps every exported method in the binary (internal/cli renders help in Go)",
		"github.com/klauspost/compress/zstd":             "internal/zstd is walship's copy, without the Snappy converter",
		"github.com/klauspost/compress/internal/snapref": "it makes the CRC-32C tables at init, 0.2 ms",
		"github.com/prometheus/client_golang/prometheus": "its registry and procfs initialise at start (the exporter writes the text format itself)",
		"github.com/urfave/cli/v2":                       "internal/cli is walship's copy",
		"github.com/urfave/cli/v2/altsrc":                "the config file is applied without it",
		"github.com/BurntSushi/toml":                     "only altsrc needed it",
	} {
		if deps[p] {
			t.Errorf("walship links %s: %s", p, why)
		}
	}
}
