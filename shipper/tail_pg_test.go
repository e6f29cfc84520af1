package shipper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/internal/pgtest"
	"github.com/walship/walship/internal/pgver"
	"github.com/walship/walship/wal"
)

// pgTail is a Tail of a real server into a fresh local archive.
type pgTail struct {
	t   *testing.T
	c   *pgtest.Cluster
	st  archive.Storage
	src *PGSource
	tl  *Tail
}

func newPGTail(t *testing.T, c *pgtest.Cluster, st archive.Storage) *pgTail {
	src := &PGSource{ConnString: c.ConnString(), WALDir: filepath.Join(c.DataDir, "pg_wal")}
	t.Cleanup(func() { src.Close() })
	return &pgTail{t: t, c: c, st: st, src: src, tl: &Tail{Storage: st, Source: src, Compression: archive.Zstd}}
}

func (p *pgTail) step() {
	p.t.Helper()
	if err := p.tl.Step(context.Background()); err != nil {
		p.t.Fatalf("Step: %v", err)
	}
}

// flush returns the server's flush position, through the Source.
func (p *pgTail) flush() Position {
	p.t.Helper()
	pos, err := p.src.Flush(context.Background())
	if err != nil {
		p.t.Fatal(err)
	}
	return pos
}

// stepSettled steps until the flush position no longer moves between two
// steps, and returns it: all of it is shipped. A server just promoted
// still writes WAL of its own for a moment (the end-of-recovery
// checkpoint), after a step and before the flush position is read.
func (p *pgTail) stepSettled() Position {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	p.step()
	pos := p.flush()
	for {
		p.step()
		next := p.flush()
		if next == pos {
			return pos
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the flush position still moves after 30 s: %v, then %v", pos, next)
		}
		pos = next
	}
}

// checkShipped checks that the tail of segment holds exactly the first n
// bytes of its file in pg_wal.
func (p *pgTail) checkShipped(segment string, n int64) {
	p.t.Helper()
	got := assembled(p.t, p.st, segment)
	file, err := os.ReadFile(filepath.Join(p.c.DataDir, "pg_wal", segment))
	if err != nil {
		p.t.Fatal(err)
	}
	if int64(len(got)) != n || !bytes.Equal(got, file[:n]) {
		p.t.Fatalf("tail of %s: %d bytes, want the first %d bytes of the file in pg_wal (equal: %v)",
			segment, len(got), n, int64(len(got)) == n && bytes.Equal(got, file[:len(got)]))
	}
}

func newPGServer(t *testing.T) *pgtest.Cluster {
	c := pgtest.New(t, pgtest.Options{InitdbArgs: []string{"--wal-segsize=1"},
		// No checkpoint may recycle a segment under the test.
		Conf: []string{"checkpoint_timeout = 1h", "autovacuum = off"}})
	c.Exec(t, "CREATE TABLE t (id int, pad text)")
	return c
}

// At an exact segment boundary PostgreSQL 16 and older name the previous
// file, with offset 0, 17 and later the next one; the tail completes that
// segment and ships nothing of the next.
func TestTailPGSegmentBoundary(t *testing.T) {
	t.Parallel()
	c := newPGServer(t)
	_, st := newTestArchive(t)
	p := newPGTail(t, c, st)
	c.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g")
	p.step()
	before := p.flush()
	seg := wal.SegmentName(before.TLI, wal.SegmentOf(before.LSN, before.SegmentSize), before.SegmentSize)
	p.checkShipped(seg, wal.SegmentOffset(before.LSN, before.SegmentSize))

	if got := c.SwitchWAL(t); got != seg {
		t.Fatalf("switched %s, want %s", got, seg)
	}
	at := p.flush()
	if off := wal.SegmentOffset(at.LSN, at.SegmentSize); off != 0 {
		t.Fatalf("flush position %s after pg_switch_wal is not at a segment boundary (offset %d)", at.LSN, off)
	}
	// The quirk this is about: 16 and older name the segment that ends
	// there, 17 and later the one that starts there.
	named := c.QueryValue(t, fmt.Sprintf("SELECT file_name || ' ' || file_offset FROM pg_walfile_name_offset('%s')", at.LSN))
	major, err := pgver.Parse(c.QueryValue(t, "SHOW server_version"))
	if err != nil {
		t.Fatal(err)
	}
	want := seg + " 0"
	if major.WALFileNameAtBoundaryIsNext() {
		want = wal.SegmentName(at.TLI, wal.SegmentOf(at.LSN, at.SegmentSize), at.SegmentSize) + " 0"
	}
	if named != want {
		t.Errorf("%s: pg_walfile_name_offset at the boundary = %q, want %q", major, named, want)
	}
	p.step()
	p.checkShipped(seg, at.SegmentSize)
	next := wal.SegmentName(at.TLI, wal.SegmentOf(at.LSN, at.SegmentSize), at.SegmentSize)
	if got := ranges(t, st, next); len(got) != 0 {
		t.Fatalf("increments %v of %s at its offset 0", got, next)
	}

	c.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100) g")
	p.step()
	after := p.flush()
	if wal.SegmentOf(after.LSN, after.SegmentSize) == wal.SegmentOf(at.LSN, at.SegmentSize) {
		p.checkShipped(next, wal.SegmentOffset(after.LSN, after.SegmentSize))
	}
}

// A tail restarted mid-segment continues exactly where the archive ends; a
// server killed and started again is reconnected to.
func TestTailPGRestarts(t *testing.T) {
	t.Parallel()
	c := newPGServer(t)
	_, st := newTestArchive(t)
	c.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g")
	first := newPGTail(t, c, st)
	first.step()
	pos := first.flush()
	seg := wal.SegmentName(pos.TLI, wal.SegmentOf(pos.LSN, pos.SegmentSize), pos.SegmentSize)
	shipped := ranges(t, st, seg)
	first.src.Close()

	c.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g")
	second := newPGTail(t, c, st)
	second.step()
	got := ranges(t, st, seg)
	if len(got) != len(shipped)+1 || strings.Join(got[:len(shipped)], " ") != strings.Join(shipped, " ") {
		t.Fatalf("increments after the restart: %v, want %v and one more", got, shipped)
	}
	pos = second.flush()
	second.checkShipped(seg, wal.SegmentOffset(pos.LSN, pos.SegmentSize))

	// The server crashes; the tail fails until it is back, then goes on.
	c.Kill(t)
	if err := second.tl.Step(context.Background()); err == nil {
		t.Fatal("Step with the server down: got nil, want an error")
	}
	c.Start(t)
	c.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g")
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := second.tl.Step(context.Background())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Step after the server came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	pos = second.flush()
	now := wal.SegmentName(pos.TLI, wal.SegmentOf(pos.LSN, pos.SegmentSize), pos.SegmentSize)
	if now != seg {
		second.checkShipped(seg, pos.SegmentSize)
	}
	second.checkShipped(now, wal.SegmentOffset(pos.LSN, pos.SegmentSize))
}

// A tail started on a standby waits for the promotion, then ships the new
// timeline from the start of its first segment.
func TestTailPGPromotion(t *testing.T) {
	t.Parallel()
	primary := newPGServer(t)
	standby := pgtest.BaseBackup(t, primary, pgtest.Options{Conf: []string{
		"primary_conninfo = '" + primary.ConnString() + "'",
	}})
	standby.WriteFile(t, "standby.signal", "")
	standby.Start(t)
	_, st := newTestArchive(t)
	p := newPGTail(t, standby, st)
	if err := p.tl.Step(context.Background()); !errors.Is(err, ErrInRecovery) {
		t.Fatalf("Step on a standby: got %v, want ErrInRecovery", err)
	}
	standby.Exec(t, "SELECT pg_promote()")
	standby.WaitFor(t, "SELECT pg_is_in_recovery()", "f", 60*time.Second)
	standby.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100) g")
	pos := p.stepSettled()
	if pos.TLI != 2 {
		t.Fatalf("timeline %d after the promotion, want 2", pos.TLI)
	}
	seg := wal.SegmentName(pos.TLI, wal.SegmentOf(pos.LSN, pos.SegmentSize), pos.SegmentSize)
	p.checkShipped(seg, wal.SegmentOffset(pos.LSN, pos.SegmentSize))
}
