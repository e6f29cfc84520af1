package shipper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walship/walship/internal/pgver"
	"github.com/walship/walship/wal"
)

// pgQueryTimeout bounds one query of PGSource, so that a server that hangs
// is noticed and reconnected to.
const pgQueryTimeout = 10 * time.Second

// flushQuery reads the flush position, never the write position: bytes
// between the two may be lost in a crash of the primary, and a standby fed
// them would hold WAL its primary never had.
const flushQuery = `SELECT l::text, f.file_name, f.file_offset
FROM pg_current_wal_flush_lsn() AS l, pg_walfile_name_offset(l) AS f`

// PGSource is a PostgreSQL server read over a normal connection, with its
// pg_wal directory on the local file system. It reconnects on the next
// Flush after an error. Its methods are not safe for concurrent use.
type PGSource struct {
	// ConnString is a libpq connection string or URL; empty means the PG*
	// environment variables. Any role may run the queries.
	ConnString string
	// WALDir is the server's pg_wal directory. Empty means
	// data_directory/pg_wal, which the server tells roles that may read
	// data_directory (superusers and pg_read_all_settings).
	WALDir string

	conn    *pgx.Conn
	major   pgver.Major
	segSize int64
	walDir  string
}

// Flush returns the server's flush position; see Source. The segment is
// left to the caller, who computes it from the LSN: only the timeline is
// taken from pg_walfile_name_offset().
func (s *PGSource) Flush(ctx context.Context) (Position, error) {
	ctx, cancel := context.WithTimeout(ctx, pgQueryTimeout)
	defer cancel()
	if s.conn == nil {
		if err := s.connect(ctx); err != nil {
			return Position{}, err
		}
	}
	var lsnText, file string
	var off int64
	err := s.conn.QueryRow(ctx, flushQuery).Scan(&lsnText, &file, &off)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55000" {
			// "recovery is in progress": a standby, connection healthy.
			return Position{}, fmt.Errorf("%w: %s", ErrInRecovery, pgErr.Message)
		}
		s.Close()
		return Position{}, fmt.Errorf("read the flush position: %w", err)
	}
	lsn, err := wal.ParseLSN(lsnText)
	if err != nil {
		return Position{}, err
	}
	n, err := wal.ParseName(file)
	if err != nil || n.Kind != wal.Segment {
		return Position{}, fmt.Errorf("pg_walfile_name_offset returned %q: %w", file, err)
	}
	pos := Position{LSN: lsn, TLI: n.TLI, SegmentSize: s.segSize}
	// pg_walfile_name_offset names the previous file, with offset 0, for an
	// LSN at a segment boundary on PostgreSQL 16 and older; anything else
	// that disagrees is a bug worth hearing of.
	named, err := n.SegNo(s.segSize)
	seg := wal.SegmentOf(lsn, s.segSize)
	want := seg
	if wal.SegmentOffset(lsn, s.segSize) == 0 && seg > 0 && !s.major.WALFileNameAtBoundaryIsNext() {
		want = seg - 1
	}
	if err != nil || named != want || off != wal.SegmentOffset(lsn, s.segSize) {
		return Position{}, fmt.Errorf("pg_walfile_name_offset(%s) = %s, offset %d, but the LSN is in segment %s",
			lsn, file, off, wal.SegmentName(n.TLI, seg, s.segSize))
	}
	return pos, nil
}

func (s *PGSource) connect(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.ConnString)
	if err != nil {
		return fmt.Errorf("connect to the server: %w", err)
	}
	major, err := pgver.Parse(conn.PgConn().ParameterStatus("server_version"))
	if err == nil {
		// A newer major may name files or lay out WAL differently.
		err = major.CheckKnown("walship tail")
	}
	if err != nil {
		conn.Close(context.Background())
		return fmt.Errorf("the server's version: %w", err)
	}
	var setting string
	err = conn.QueryRow(ctx, "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'").Scan(&setting)
	if err != nil {
		conn.Close(context.Background())
		return fmt.Errorf("read wal_segment_size: %w", err)
	}
	size, err := strconv.ParseInt(setting, 10, 64)
	if err != nil || !wal.ValidSegmentSize(size) {
		conn.Close(context.Background())
		return fmt.Errorf("server reports wal_segment_size %q", setting)
	}
	walDir := s.WALDir
	if walDir == "" {
		var dataDir string
		if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&dataDir); err != nil {
			conn.Close(context.Background())
			return fmt.Errorf("ask the server for its data directory (or pass --pgdata): %w", err)
		}
		walDir = filepath.Join(dataDir, "pg_wal")
	}
	s.conn, s.major, s.segSize, s.walDir = conn, major, size, walDir
	return nil
}

// OpenSegment opens a segment file of pg_wal; see Source.
func (s *PGSource) OpenSegment(name string) (SegmentFile, error) {
	dir := s.walDir
	if dir == "" {
		dir = s.WALDir
	}
	if dir == "" {
		return nil, errors.New("pg_wal is not known before the first connection")
	}
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return nil, err // not a nil *os.File in a non-nil interface
	}
	return f, nil
}

// Close closes the connection; the next Flush opens a new one.
func (s *PGSource) Close() error {
	if s.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.conn.Close(ctx)
	s.conn = nil
	return err
}
