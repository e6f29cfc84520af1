package basebackup

import (
	"strconv"
	"testing"

	"github.com/walship/walship/internal/pgver"
)

// The command in each dialect; the real servers' answers to them are
// checked by the tests of backup and pgtest, run on every major.
func TestCommandSQL(t *testing.T) {
	full := Command{Label: "it's", FastCheckpoint: true, Progress: true, Manifest: true, TablespaceMap: true, MaxRateKB: 64}
	for _, tt := range []struct {
		major pgver.Major
		cmd   Command
		want  string
	}{
		{13, full, "BASE_BACKUP LABEL 'it''s' PROGRESS FAST NOWAIT MAX_RATE 64 TABLESPACE_MAP MANIFEST 'yes' MANIFEST_CHECKSUMS 'CRC32C'"},
		{14, Command{Label: "x", WAL: true}, "BASE_BACKUP LABEL 'x' WAL NOWAIT"},
		{15, full, "BASE_BACKUP (LABEL 'it''s', CHECKPOINT 'fast', PROGRESS true, WAL false, WAIT false, " +
			"MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TABLESPACE_MAP true, MAX_RATE 64)"},
		{18, Command{Label: "x", WAL: true, ServerZstd: "level=1"}, "BASE_BACKUP (LABEL 'x', CHECKPOINT 'spread', PROGRESS false, " +
			"WAL true, WAIT false, MANIFEST 'no', COMPRESSION 'zstd', COMPRESSION_DETAIL 'level=1')"},
	} {
		got, err := tt.cmd.SQL(tt.major)
		if err != nil || got != tt.want {
			t.Errorf("%s: got %q, %v\nwant %q", tt.major, got, err, tt.want)
		}
	}
	if _, err := (Command{Label: "x", ServerZstd: "level=1"}).SQL(14); err == nil {
		t.Error("PostgreSQL 14: server compression accepted")
	}
}

// The typed messages of PostgreSQL 15 and later reach the handler.
func TestDispatch(t *testing.T) {
	h := &recorder{}
	for _, m := range [][]byte{
		[]byte("nbase.tar\x00\x00"),
		[]byte("dabc"),
		{'p', 0, 0, 0, 0, 0, 0, 1, 0},
		[]byte("m"),
		[]byte("d{}"),
	} {
		if err := dispatch(m, h); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := h.log, "archive base.tar at \"\"; data abc; progress 256; manifest; data {}; "; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if err := dispatch([]byte("x"), h); err == nil {
		t.Error("unknown message type accepted")
	}
	if err := dispatch([]byte("nbase.tar"), h); err == nil {
		t.Error("unterminated archive name accepted")
	}
}

type recorder struct{ log string }

func (r *recorder) Archive(name, loc string) error {
	r.log += "archive " + name + " at \"" + loc + "\"; "
	return nil
}
func (r *recorder) Manifest() error     { r.log += "manifest; "; return nil }
func (r *recorder) Data(p []byte) error { r.log += "data " + string(p) + "; "; return nil }
func (r *recorder) Progress(n int64)    { r.log += "progress " + strconv.FormatInt(n, 10) + "; " }
