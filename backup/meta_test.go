package backup

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestMetaJSON(t *testing.T) {
	st := testArchive(t)
	m := putBackup(t, st, "20261122T011500Z", 1, 3, 4)
	got, err := ReadMeta(context.Background(), st, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.StartLSN != m.StartLSN || got.StopLSN != m.StopLSN || got.SystemID != m.SystemID || !got.StartTime.Equal(m.StartTime) {
		t.Errorf("round trip: got %+v, want %+v", got, m)
	}
	b, _ := json.Marshal(m)
	var raw map[string]any
	json.Unmarshal(b, &raw)
	if raw["start_lsn"] != "0/00300028" || raw["system_identifier"] != "7000000000000000042" {
		t.Errorf("backup.json holds start_lsn %v, system_identifier %v; want PostgreSQL's text forms", raw["start_lsn"], raw["system_identifier"])
	}
}

func TestListCompleteAndIncomplete(t *testing.T) {
	st := testArchive(t)
	putBackup(t, st, "20261122T020000Z", 1, 5, 5)
	putBackup(t, st, "20261122T010000Z", 1, 3, 3)
	putFile(t, st, startedPath("20261122T030000Z"), "{}")
	putFile(t, st, Path("20261122T030000Z", "base.tar.zst"), "half")
	putFile(t, st, "backups/notes.txt", "not a backup")
	l, err := List(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(l.Complete); got != "[20261122T010000Z 20261122T020000Z]" {
		t.Errorf("complete: got %s", got)
	}
	if len(l.Incomplete) != 1 || l.Incomplete[0] != "20261122T030000Z" {
		t.Errorf("incomplete: got %v, want [20261122T030000Z]", l.Incomplete)
	}
	if _, err := ReadMeta(context.Background(), st, "20261122T030000Z"); !errors.Is(err, ErrNoBackup) {
		t.Errorf("ReadMeta of an interrupted backup: got %v, want ErrNoBackup", err)
	}
	putFile(t, st, metaPath("20261122T040000Z"), "{damaged")
	if _, err := List(context.Background(), st); err == nil {
		t.Errorf("List with a damaged backup.json: no error")
	}
}

// Backups started in the same second get different ids, even once the
// first is complete.
func TestClaimID(t *testing.T) {
	st := testArchive(t)
	start, _ := time.Parse(idLayout, "20261122T011500Z")
	a, err := claimID(context.Background(), st, start, "")
	if err != nil {
		t.Fatal(err)
	}
	putBackup(t, st, "20261122T011501Z", 1, 2, 2)
	b, err := claimID(context.Background(), st, start, "")
	if err != nil {
		t.Fatal(err)
	}
	if a != "20261122T011500Z" || b != "20261122T011502Z" {
		t.Errorf("ids %s and %s, want 20261122T011500Z and 20261122T011502Z", a, b)
	}
}
