package backup

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/walship/walship/internal/pgver"
)

// makeManifest builds a manifest as PostgreSQL writes it, with its checksum.
func makeManifest(files map[string]string) []byte {
	var b strings.Builder
	b.WriteString("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n")
	i := 0
	for path, content := range files {
		var sum [4]byte
		binary.LittleEndian.PutUint32(sum[:], crc32.Checksum([]byte(content), castagnoli()))
		sep := ","
		if i == len(files)-1 {
			sep = ""
		}
		key, val := "Path", path
		if strings.ContainsRune(path, '\n') {
			key, val = "Encoded-Path", hex.EncodeToString([]byte(path))
		}
		fmt.Fprintf(&b, "{ %q: %q, \"Size\": %d, \"Last-Modified\": \"2026-11-22 01:20:13 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"%x\" }%s\n",
			key, val, len(content), sum, sep)
		i++
	}
	b.WriteString("],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/700028\", \"End-LSN\": \"0/700100\" }\n],\n")
	sum := sha256.Sum256([]byte(b.String()))
	fmt.Fprintf(&b, "\"Manifest-Checksum\": \"%x\"}\n", sum)
	return []byte(b.String())
}

func TestParseManifest(t *testing.T) {
	raw := makeManifest(map[string]string{"backup_label": "START WAL LOCATION", "odd\nname": "x"})
	m, err := ParseManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 2 || m.Files["backup_label"].Size != 18 || m.Files["odd\nname"].Size != 1 {
		t.Errorf("files: got %+v", m.Files)
	}
	if len(m.WALRanges) != 1 || m.WALRanges[0].End.String() != "0/00700100" {
		t.Errorf("WAL ranges: got %+v", m.WALRanges)
	}
	c := &checker{want: m.Files["backup_label"]}
	c.Write([]byte("START WAL LOCATION"))
	if err := c.check("backup_label"); err != nil {
		t.Errorf("checksum of the right content: %v", err)
	}
	c = &checker{want: m.Files["backup_label"]}
	c.Write([]byte("START WAL LOCATIOM"))
	if err := c.check("backup_label"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("checksum of changed content: got %v, want ErrCorrupt", err)
	}
	c = &checker{want: m.Files["backup_label"]}
	c.Write([]byte("START"))
	if err := c.check("backup_label"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("short content: got %v, want ErrCorrupt", err)
	}

	tampered := []byte(strings.Replace(string(raw), `"Size": 18`, `"Size": 19`, 1))
	if _, err := ParseManifest(tampered); !errors.Is(err, ErrCorrupt) {
		t.Errorf("tampered manifest: got %v, want ErrCorrupt", err)
	}
	if _, err := ParseManifest(raw[:len(raw)/2]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("truncated manifest: got %v, want ErrCorrupt", err)
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add(makeManifest(map[string]string{"a": "b"}))
	f.Add([]byte("{}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err == nil && m == nil {
			t.Fatal("nil manifest without error")
		}
	})
}

// A manifest must be the version its server's major writes and, from
// version 2 (PostgreSQL 17) on, name the backup's system.
func TestManifestCheckOrigin(t *testing.T) {
	for _, tt := range []struct {
		man   Manifest
		major pgver.Major
		ok    bool
	}{
		{Manifest{Version: 1}, 13, true},
		{Manifest{Version: 1}, 16, true},
		{Manifest{Version: 2, SystemID: 42}, 17, true},
		{Manifest{Version: 2, SystemID: 43}, 18, false}, // another system's
		{Manifest{Version: 1}, 17, false},               // 17 writes version 2
		{Manifest{Version: 2, SystemID: 42}, 15, false}, // 15 writes version 1
		{Manifest{Version: 1}, 0, true},                 // no major recorded
	} {
		err := tt.man.checkOrigin(tt.major, 42)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrCorrupt)) {
			t.Errorf("%+v of PostgreSQL %d: %v, want ok %v", tt.man, tt.major, err, tt.ok)
		}
	}
}
