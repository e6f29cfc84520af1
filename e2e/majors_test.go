package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/walship/walship/internal/pgtest"
	"github.com/walship/walship/internal/pgver"
)

// The TestMajor tests check what walship records of the server's major
// version; make test-majors runs them, with the other tests of what
// differs between majors, on every major from 13 on.

// A backup records the server's major, and its manifest is the version
// that major writes: version 2 with the system identifier from
// PostgreSQL 17 on, version 1 without it before. A primary whose
// transactions are read-only by default is still taken for a primary (the
// standby check reads transaction_read_only), and restore checks the
// manifest against backup.json.
func TestMajorBackupManifest(t *testing.T) {
	major := pgtest.Major(t)
	s := newBackupSetup(t, "default_transaction_read_only = on")
	p := s.primary
	p.Exec(t, "BEGIN READ WRITE; CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1); COMMIT")
	m := s.backup(t, p)

	var meta struct {
		PGVersion   int    `json:"pg_version"`
		SystemID    uint64 `json:"system_identifier,string"`
		FromStandby bool   `json:"from_standby"`
	}
	readJSON(t, filepath.Join(s.arch, "backups", m.ID+".json"), &meta)
	if got := pgver.FromVersionNum(meta.PGVersion); got != major || meta.FromStandby {
		t.Errorf("backup.json: pg_version %d, from_standby %v; want %s, false", meta.PGVersion, meta.FromStandby, major)
	}
	var id struct {
		SystemID  uint64 `json:"system_identifier,string"`
		PGVersion int    `json:"pg_version"`
	}
	readJSON(t, filepath.Join(s.arch, "walship.json"), &id)
	if pgver.Major(id.PGVersion) != major {
		t.Errorf("walship.json: pg_version %d, want %d (from the page magic)", id.PGVersion, major)
	}
	if sysid := p.QueryValue(t, "SELECT system_identifier FROM pg_control_system()"); strconv.FormatUint(id.SystemID, 10) != sysid {
		t.Errorf("walship.json: system identifier %d, the server's is %s", id.SystemID, sysid)
	}

	z, err := os.ReadFile(filepath.Join(s.arch, "backups", m.ID, "backup_manifest.zst"))
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	raw, err := dec.DecodeAll(z, nil)
	if err != nil {
		t.Fatal(err)
	}
	var man struct {
		Version  int     `json:"PostgreSQL-Backup-Manifest-Version"`
		SystemID *uint64 `json:"System-Identifier"`
	}
	if err := json.Unmarshal(raw, &man); err != nil {
		t.Fatal(err)
	}
	if man.Version != major.ManifestVersion() || (man.SystemID != nil) != (major.ManifestVersion() >= 2) ||
		(man.SystemID != nil && *man.SystemID != id.SystemID) {
		t.Errorf("%s's manifest: version %d, system identifier %v; want version %d, with the archive's system identifier %d from version 2 on",
			major, man.Version, man.SystemID, major.ManifestVersion(), id.SystemID)
	}
	if out := s.walship(t, "verify", "--archive", s.arch); !strings.Contains(out, " 0 problems") {
		t.Errorf("verify:\n%s", out)
	}
	s.restoreRows(t, "1")
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
