package backup

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/walship/walship/wal"
)

// This file speaks the part of PostgreSQL's streaming replication protocol
// that a base backup needs (protocol-replication.html). pgconn has no
// support for BASE_BACKUP's mix of result sets and one long COPY OUT, so the
// messages are read one by one, as pglogrepl and pg_basebackup do.

// minVersion is the oldest server whose BASE_BACKUP sends every archive and
// the manifest in one COPY OUT stream with typed messages.
const minVersion = 150000

// connectReplication opens a physical replication connection: connString is
// a libpq connection string or URL, and its replication setting, if any, is
// replaced by "true".
func connectReplication(ctx context.Context, connString string) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("connection string: %w", err)
	}
	cfg.RuntimeParams["replication"] = "true"
	// Read the socket in large chunks: a backup is one long stream of
	// small CopyData messages, and pgconn reads each by itself.
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, 1<<20), w)
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open a replication connection: %w (the server needs max_wal_senders > 0, and pg_hba.conf a \"replication\" line for this user)", err)
	}
	return conn, nil
}

// serverInfo is what a backup records about the server.
type serverInfo struct {
	SystemID    uint64
	Timeline    wal.TimeLine
	Version     int // server_version_num
	SegmentSize int64
	BlockSize   int
	InRecovery  bool
}

// identify asks the server who it is, on a replication connection.
func identify(ctx context.Context, conn *pgconn.PgConn) (serverInfo, error) {
	var si serverInfo
	row, err := queryRow(ctx, conn, "IDENTIFY_SYSTEM")
	if err != nil {
		return si, err
	}
	if len(row) < 2 {
		return si, errors.New("IDENTIFY_SYSTEM: short answer")
	}
	if si.SystemID, err = strconv.ParseUint(row[0], 10, 64); err != nil {
		return si, fmt.Errorf("IDENTIFY_SYSTEM: system identifier %q: %w", row[0], err)
	}
	tli, err := strconv.ParseUint(row[1], 10, 32)
	if err != nil || tli == 0 {
		return si, fmt.Errorf("IDENTIFY_SYSTEM: timeline %q", row[1])
	}
	si.Timeline = wal.TimeLine(tli)
	v, err := show(ctx, conn, "server_version_num")
	if err != nil {
		return si, err
	}
	if si.Version, err = strconv.Atoi(v); err != nil {
		return si, fmt.Errorf("server_version_num %q: %w", v, err)
	}
	if si.Version < minVersion {
		return si, fmt.Errorf("walship backup needs PostgreSQL 15 or later, the server runs %s: use pg_basebackup",
			conn.ParameterStatus("server_version"))
	}
	for _, s := range []struct {
		name string
		dst  *int64
	}{{"wal_segment_size", &si.SegmentSize}, {"wal_block_size", nil}} {
		v, err := show(ctx, conn, s.name)
		if err != nil {
			return si, err
		}
		n, err := parseSize(v)
		if err != nil {
			return si, fmt.Errorf("%s: %w", s.name, err)
		}
		if s.dst != nil {
			*s.dst = n
		} else {
			si.BlockSize = int(n)
		}
	}
	if !wal.ValidSegmentSize(si.SegmentSize) {
		return si, fmt.Errorf("server reports wal_segment_size %d", si.SegmentSize)
	}
	// Reported at connection start since PostgreSQL 14.
	si.InRecovery = conn.ParameterStatus("in_hot_standby") == "on"
	return si, nil
}

// parseSize reads a size as SHOW prints it: "16MB", "8192", "1GB".
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"kB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"TB", 1 << 40}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q", s)
	}
	return n * mult, nil
}

func show(ctx context.Context, conn *pgconn.PgConn, name string) (string, error) {
	row, err := queryRow(ctx, conn, "SHOW "+name)
	if err != nil {
		return "", err
	}
	if len(row) < 1 {
		return "", fmt.Errorf("SHOW %s: no value", name)
	}
	return row[0], nil
}

// queryRow runs a simple query and returns the first row as text.
func queryRow(ctx context.Context, conn *pgconn.PgConn, sql string) ([]string, error) {
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", sql, err)
	}
	for _, r := range results {
		if r.Err != nil {
			return nil, fmt.Errorf("%s: %w", sql, r.Err)
		}
		if len(r.Rows) > 0 {
			row := make([]string, len(r.Rows[0]))
			for i, v := range r.Rows[0] {
				row[i] = string(v)
			}
			return row, nil
		}
	}
	return nil, fmt.Errorf("%s: no rows", sql)
}

// quoteLiteral quotes s for the replication command grammar, which knows
// only doubled quotes as an escape.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// baseBackupCommand builds the BASE_BACKUP command (PostgreSQL 15 syntax).
// WAIT false: the server would wait for archiving without end and without
// telling the client; Backup waits itself, with a timeout and a message.
// TABLESPACE_MAP: tablespaces are listed in a tablespace_map file instead of
// symbolic links, so restore can move them.
//
// serverZstd asks the server to compress each archive with zstd (level 1,
// ServerWorkers threads), as pg_basebackup --compress=server-zstd does.
// maxRateKB, when not 0, is MAX_RATE: the most KiB the server sends a
// second.
func baseBackupCommand(label string, fast, progress, serverZstd bool, maxRateKB int64) string {
	checkpoint := "spread"
	if fast {
		checkpoint = "fast"
	}
	extra := ""
	if serverZstd {
		extra = fmt.Sprintf(", COMPRESSION 'zstd', COMPRESSION_DETAIL %s", quoteLiteral(serverCompressionDetail))
	}
	if maxRateKB > 0 {
		extra += fmt.Sprintf(", MAX_RATE %d", maxRateKB)
	}
	return fmt.Sprintf("BASE_BACKUP (LABEL %s, CHECKPOINT '%s', PROGRESS %t, WAL false, WAIT false, "+
		"MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TABLESPACE_MAP true%s)", quoteLiteral(label), checkpoint, progress, extra)
}

// ServerWorkers is how many threads the server compresses with when
// Options.CompressOnServer is set.
const ServerWorkers = 2

// serverCompressionDetail is BASE_BACKUP's COMPRESSION_DETAIL; a test sets
// a value the server refuses, to exercise the fallback.
var serverCompressionDetail = fmt.Sprintf("level=1,workers=%d", ServerWorkers)

// tablespaceRow is one row of BASE_BACKUP's tablespace result set.
type tablespaceRow struct {
	OID      uint32 // 0 for the main data directory
	Location string
	SizeKB   int64 // estimated, with PROGRESS; -1 unknown
}

// startResult is what the server says before the data.
type startResult struct {
	StartLSN    wal.LSN
	Timeline    wal.TimeLine
	Tablespaces []tablespaceRow
}

// backupHandler receives the COPY stream of a base backup.
type backupHandler interface {
	// archive starts a new tar archive: "base.tar" for the data directory
	// (location ""), "<oid>.tar" for a tablespace.
	archive(name, location string) error
	// manifest starts the backup manifest; the data that follows is its.
	manifest() error
	// data is the next chunk of the current archive or manifest; it is
	// valid only during the call.
	data(p []byte) error
	// progress reports the bytes the server has sent so far.
	progress(done int64)
}

// runBaseBackup sends cmd and reads the whole answer, feeding the archives
// to h; start is called once the start position and tablespaces are known.
// It returns the stop position. The connection cannot be used for anything
// else afterwards if it returns an error.
func runBaseBackup(ctx context.Context, conn *pgconn.PgConn, cmd string,
	start func(startResult) error, h backupHandler) (wal.LSN, wal.TimeLine, error) {
	conn.Frontend().Send(&pgproto3.Query{String: cmd})
	if err := conn.Frontend().Flush(); err != nil {
		return 0, 0, fmt.Errorf("send BASE_BACKUP: %w", err)
	}
	r := &reader{ctx: ctx, conn: conn}

	// The start position: one row, then CommandComplete.
	rows, err := r.resultSet()
	if err != nil {
		return 0, 0, err
	}
	var sr startResult
	if len(rows) != 1 || len(rows[0]) < 2 {
		return 0, 0, errors.New("BASE_BACKUP: no start position")
	}
	if sr.StartLSN, sr.Timeline, err = parsePosition(rows[0]); err != nil {
		return 0, 0, err
	}
	// The tablespaces, ended by CommandComplete.
	if rows, err = r.resultSet(); err != nil {
		return 0, 0, err
	}
	for _, row := range rows {
		if len(row) < 3 {
			return 0, 0, errors.New("BASE_BACKUP: short tablespace row")
		}
		t := tablespaceRow{SizeKB: -1}
		if row[0] != nil {
			oid, err := strconv.ParseUint(*row[0], 10, 32)
			if err != nil || oid == 0 {
				return 0, 0, fmt.Errorf("BASE_BACKUP: tablespace oid %q", *row[0])
			}
			t.OID = uint32(oid)
		}
		if row[1] != nil {
			t.Location = *row[1]
		}
		if row[2] != nil {
			t.SizeKB, _ = strconv.ParseInt(*row[2], 10, 64)
		}
		sr.Tablespaces = append(sr.Tablespaces, t)
	}
	if err := start(sr); err != nil {
		return 0, 0, err
	}

	msg, err := r.next()
	if err != nil {
		return 0, 0, err
	}
	if _, ok := msg.(*pgproto3.CopyOutResponse); !ok {
		return 0, 0, fmt.Errorf("BASE_BACKUP: unexpected %T before the data", msg)
	}
	for done := false; !done; {
		msg, err := r.next()
		if err != nil {
			return 0, 0, err
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyDone:
			done = true
		case *pgproto3.CopyData:
			if err := dispatch(msg.Data, h); err != nil {
				return 0, 0, err
			}
		default:
			return 0, 0, fmt.Errorf("BASE_BACKUP: unexpected %T in the data", msg)
		}
	}

	// The stop position, then the command's end.
	if rows, err = r.resultSet(); err != nil {
		return 0, 0, err
	}
	if len(rows) != 1 || len(rows[0]) < 2 {
		return 0, 0, errors.New("BASE_BACKUP: no stop position")
	}
	stop, stopTLI, err := parsePosition(rows[0])
	if err != nil {
		return 0, 0, err
	}
	for {
		msg, err := r.next()
		if err != nil {
			return 0, 0, err
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return stop, stopTLI, nil
		}
	}
}

// dispatch hands one typed CopyData message to h.
func dispatch(p []byte, h backupHandler) error {
	if len(p) == 0 {
		return errors.New("BASE_BACKUP: empty data message")
	}
	switch p[0] {
	case 'n':
		name, rest, ok1 := cutCString(p[1:])
		location, _, ok2 := cutCString(rest)
		if !ok1 || !ok2 {
			return errors.New("BASE_BACKUP: malformed new-archive message")
		}
		return h.archive(name, location)
	case 'd':
		return h.data(p[1:])
	case 'p':
		if len(p) >= 9 {
			h.progress(int64(binary.BigEndian.Uint64(p[1:9])))
		}
		return nil
	case 'm':
		return h.manifest()
	}
	return fmt.Errorf("BASE_BACKUP: unknown message type %q: a newer server than this walship knows", p[0])
}

func cutCString(p []byte) (string, []byte, bool) {
	for i, c := range p {
		if c == 0 {
			return string(p[:i]), p[i+1:], true
		}
	}
	return "", nil, false
}

func parsePosition(row []*string) (wal.LSN, wal.TimeLine, error) {
	if row[0] == nil || row[1] == nil {
		return 0, 0, errors.New("BASE_BACKUP: null position")
	}
	lsn, err := wal.ParseLSN(*row[0])
	if err != nil {
		return 0, 0, fmt.Errorf("BASE_BACKUP: %w", err)
	}
	tli, err := strconv.ParseUint(*row[1], 10, 32)
	if err != nil || tli == 0 {
		return 0, 0, fmt.Errorf("BASE_BACKUP: timeline %q", *row[1])
	}
	return lsn, wal.TimeLine(tli), nil
}

// reader reads backend messages, turning an ErrorResponse into an error and
// skipping the messages that may come at any time.
type reader struct {
	ctx  context.Context
	conn *pgconn.PgConn
}

func (r *reader) next() (pgproto3.BackendMessage, error) {
	for {
		msg, err := r.conn.ReceiveMessage(r.ctx)
		if err != nil {
			if r.ctx.Err() != nil {
				return nil, r.ctx.Err()
			}
			return nil, fmt.Errorf("base backup: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.ErrorResponse:
			return nil, fmt.Errorf("base backup: %w", pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
			continue
		}
		return msg, nil
	}
}

// resultSet reads RowDescription, DataRows and CommandComplete, and returns
// the rows as text (nil for NULL).
func (r *reader) resultSet() ([][]*string, error) {
	var rows [][]*string
	for {
		msg, err := r.next()
		if err != nil {
			return nil, err
		}
		switch msg := msg.(type) {
		case *pgproto3.RowDescription:
		case *pgproto3.DataRow:
			row := make([]*string, len(msg.Values))
			for i, v := range msg.Values {
				if v != nil {
					s := string(v)
					row[i] = &s
				}
			}
			rows = append(rows, row)
		case *pgproto3.CommandComplete:
			return rows, nil
		default:
			return nil, fmt.Errorf("BASE_BACKUP: unexpected %T in a result set", msg)
		}
	}
}
