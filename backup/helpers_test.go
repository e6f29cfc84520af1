package backup

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/local"
	"github.com/walship/walship/wal"
)

const (
	testSysID   = 7000000000000000042
	testSegSize = 1 << 20
)

// segment returns a 1 MiB segment of testSysID with a valid long page header.
func segment(tli wal.TimeLine, seg wal.SegNo) []byte {
	b := make([]byte, testSegSize)
	binary.LittleEndian.PutUint16(b[0:], 0xD110)
	binary.LittleEndian.PutUint16(b[2:], wal.InfoLongHeader)
	binary.LittleEndian.PutUint32(b[4:], uint32(tli))
	binary.LittleEndian.PutUint64(b[8:], uint64(seg.Start(testSegSize)))
	binary.LittleEndian.PutUint64(b[24:], testSysID)
	binary.LittleEndian.PutUint32(b[32:], testSegSize)
	binary.LittleEndian.PutUint32(b[36:], 8192)
	for i := 64; i < len(b); i += 4096 {
		b[i] = byte(seg)
	}
	return b
}

// testArchive returns a local archive with an identity and the segments
// first to last of timeline tli.
func testArchive(t *testing.T) archive.Storage {
	t.Helper()
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	_, err = archive.InitIdentity(context.Background(), st, archive.Identity{Format: 1, SystemID: testSysID,
		PGVersion: 15, SegmentSize: testSegSize, BlockSize: 8192, Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func putSegments(t *testing.T, st archive.Storage, tli wal.TimeLine, first, last wal.SegNo) {
	t.Helper()
	for s := first; s <= last; s++ {
		name := wal.SegmentName(tli, s, testSegSize)
		if err := archive.PutWAL(context.Background(), st, name, bytes.NewReader(segment(tli, s)), archive.Zstd); err != nil {
			t.Fatal(err)
		}
	}
}

func putFile(t *testing.T, st archive.Storage, name, content string) {
	t.Helper()
	if err := st.Put(context.Background(), name, strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
}

// putBackup records a complete backup whose WAL runs from segment start to
// segment stop of timeline tli; it has no data files.
func putBackup(t *testing.T, st archive.Storage, id string, tli wal.TimeLine, start, stop wal.SegNo) Meta {
	t.Helper()
	tm, err := time.Parse(idLayout, id)
	if err != nil {
		t.Fatal(err)
	}
	m := Meta{Format: MetaFormat, ID: id, StartTime: tm, StopTime: tm.Add(time.Second),
		StartLSN: start.Start(testSegSize) + 0x28, StopLSN: stop.Start(testSegSize) + 0x100,
		StartTimeline: tli, StopTimeline: tli, SystemID: testSysID, SegmentSize: testSegSize,
		Archives: []ArchiveFile{{Name: "base.tar"}}, Manifest: "backup_manifest"}
	putFile(t, st, startedPath(id), "{}")
	if err := writeMeta(context.Background(), st, m); err != nil {
		t.Fatal(err)
	}
	return m
}

func ids(ms []Meta) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.ID)
	}
	return fmt.Sprint(s)
}
