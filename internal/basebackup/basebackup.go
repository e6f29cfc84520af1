// Package basebackup speaks the part of PostgreSQL's streaming replication
// protocol that a base backup needs (protocol-replication.html), in the
// dialect of each major: PostgreSQL 13 and 14 take BASE_BACKUP's old
// keyword options and send one COPY OUT stream per archive, then one for
// the manifest; 15 and later take a parenthesized option list and send
// everything in one COPY OUT stream of typed messages. Callers see one
// Handler either way. walship backup uses it, and so does the test
// harness, which builds standbys with it instead of pg_basebackup.
//
// pgconn has no support for BASE_BACKUP's mix of result sets and COPY OUT
// streams, so the messages are read one by one, as pglogrepl and
// pg_basebackup do.
package basebackup

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

	"github.com/walship/walship/internal/pgver"
	"github.com/walship/walship/wal"
)

// Connect opens a physical replication connection: connString is a libpq
// connection string or URL, and its replication setting, if any, is
// replaced by "true".
func Connect(ctx context.Context, connString string) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("connection string: %w", err)
	}
	cfg.RuntimeParams["replication"] = "true"
	// InRecovery reads transaction_read_only, which this setting would
	// turn on on a primary too.
	cfg.RuntimeParams["default_transaction_read_only"] = "off"
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

// Major asks the server on a replication connection for its major version.
func Major(ctx context.Context, conn *pgconn.PgConn) (pgver.Major, error) {
	v, err := Show(ctx, conn, "server_version_num")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("server_version_num %q: %w", v, err)
	}
	return pgver.FromVersionNum(n), nil
}

// InRecovery reports whether the server is a standby. A replication
// connection cannot call pg_is_in_recovery(), and in_hot_standby is only
// reported from PostgreSQL 14 on; but SHOW runs in a transaction, which
// the server makes read-only during recovery, and Connect turned
// default_transaction_read_only off, so transaction_read_only is on in
// recovery only. The same test serves every major.
func InRecovery(ctx context.Context, conn *pgconn.PgConn) (bool, error) {
	v, err := Show(ctx, conn, "transaction_read_only")
	if err != nil {
		return false, err
	}
	return v == "on", nil
}

// Show returns a setting's value as SHOW prints it.
func Show(ctx context.Context, conn *pgconn.PgConn, name string) (string, error) {
	row, err := QueryRow(ctx, conn, "SHOW "+name)
	if err != nil {
		return "", err
	}
	if len(row) < 1 {
		return "", fmt.Errorf("SHOW %s: no value", name)
	}
	return row[0], nil
}

// QueryRow runs a simple query (a replication command) and returns the
// first row as text.
func QueryRow(ctx context.Context, conn *pgconn.PgConn, sql string) ([]string, error) {
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

// Command is what a BASE_BACKUP asks for.
type Command struct {
	Label          string
	FastCheckpoint bool // an immediate checkpoint instead of a spread one
	Progress       bool // estimate the tablespaces' sizes first
	// WAL includes the WAL from the backup's start to its stop in base.tar
	// (pg_basebackup -X fetch). Without it the server does not wait for
	// the WAL to be archived either: the caller checks the archive itself,
	// with a timeout and a message, instead of a wait without end.
	WAL bool
	// Manifest asks for a backup manifest with CRC32C checksums.
	Manifest bool
	// TablespaceMap lists the tablespaces in a tablespace_map file instead
	// of symbolic links, so that a restore can move them.
	TablespaceMap bool
	// ServerZstd, when not "", has the server compress each archive with
	// zstd, with this COMPRESSION_DETAIL ("level=1,workers=2"). Only for
	// majors whose ServerCompression is true.
	ServerZstd string
	// MaxRateKB, when not 0, is MAX_RATE: the most KiB the server sends a
	// second.
	MaxRateKB int64
	// Incremental asks for an incremental backup (PostgreSQL 17): only the
	// blocks changed since the backup whose manifest UploadManifest sent
	// on the same connection.
	Incremental bool
}

// SQL returns the command in the dialect of major.
func (c Command) SQL(major pgver.Major) (string, error) {
	if c.ServerZstd != "" && !major.ServerCompression() {
		return "", fmt.Errorf("%s cannot compress a base backup on the server", major)
	}
	if major.LegacyBaseBackup() {
		// BASE_BACKUP [LABEL 'label'] [PROGRESS] [FAST] [WAL] [NOWAIT]
		// [MAX_RATE rate] [TABLESPACE_MAP] [MANIFEST 'yes']
		// [MANIFEST_CHECKSUMS 'CRC32C'], in the order repl_gram.y of 13
		// and 14 lists them (it takes any order).
		var b strings.Builder
		b.WriteString("BASE_BACKUP LABEL " + quoteLiteral(c.Label))
		if c.Progress {
			b.WriteString(" PROGRESS")
		}
		if c.FastCheckpoint {
			b.WriteString(" FAST")
		}
		if c.WAL {
			b.WriteString(" WAL")
		}
		b.WriteString(" NOWAIT")
		if c.MaxRateKB > 0 {
			fmt.Fprintf(&b, " MAX_RATE %d", c.MaxRateKB)
		}
		if c.TablespaceMap {
			b.WriteString(" TABLESPACE_MAP")
		}
		if c.Manifest {
			b.WriteString(" MANIFEST 'yes' MANIFEST_CHECKSUMS 'CRC32C'")
		}
		return b.String(), nil
	}
	checkpoint := "spread"
	if c.FastCheckpoint {
		checkpoint = "fast"
	}
	opts := []string{
		"LABEL " + quoteLiteral(c.Label),
		"CHECKPOINT '" + checkpoint + "'",
		fmt.Sprintf("PROGRESS %t", c.Progress),
		fmt.Sprintf("WAL %t", c.WAL),
		"WAIT false",
	}
	if c.Manifest {
		opts = append(opts, "MANIFEST 'yes'", "MANIFEST_CHECKSUMS 'CRC32C'")
	} else {
		opts = append(opts, "MANIFEST 'no'")
	}
	if c.TablespaceMap {
		opts = append(opts, "TABLESPACE_MAP true")
	}
	if c.ServerZstd != "" {
		opts = append(opts, "COMPRESSION 'zstd'", "COMPRESSION_DETAIL "+quoteLiteral(c.ServerZstd))
	}
	if c.MaxRateKB > 0 {
		opts = append(opts, fmt.Sprintf("MAX_RATE %d", c.MaxRateKB))
	}
	if c.Incremental {
		if !major.IncrementalBackup() {
			return "", fmt.Errorf("%s cannot take an incremental backup (PostgreSQL 17 and later can)", major)
		}
		opts = append(opts, "INCREMENTAL")
	}
	return "BASE_BACKUP (" + strings.Join(opts, ", ") + ")", nil
}

// UploadManifest sends the manifest of the backup an incremental backup
// builds on (UPLOAD_MANIFEST, PostgreSQL 17); the next BASE_BACKUP
// (INCREMENTAL) on the same connection uses it.
func UploadManifest(ctx context.Context, conn *pgconn.PgConn, manifest io.Reader) error {
	if _, err := conn.CopyFrom(ctx, manifest, "UPLOAD_MANIFEST"); err != nil {
		return fmt.Errorf("UPLOAD_MANIFEST: %w", err)
	}
	return nil
}

// quoteLiteral quotes s for the replication command grammar, which knows
// only doubled quotes as an escape.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Tablespace is one row of BASE_BACKUP's tablespace result set.
type Tablespace struct {
	OID      uint32 // 0 for the main data directory
	Location string
	SizeKB   int64 // estimated, with Progress; -1 unknown
}

// Start is what the server says before the data.
type Start struct {
	LSN         wal.LSN
	Timeline    wal.TimeLine
	Tablespaces []Tablespace
}

// Handler receives the archives and the manifest of a base backup.
type Handler interface {
	// Archive starts a new tar archive: "base.tar" for the data directory
	// (location ""), "<oid>.tar" for a tablespace, with ".zst" when the
	// server compresses. PostgreSQL 15 and later end each archive with
	// tar's two zero blocks; 13 and 14 leave them out.
	Archive(name, location string) error
	// Manifest starts the backup manifest; the data that follows is its.
	Manifest() error
	// Data is the next chunk of the current archive or manifest; it is
	// valid only during the call.
	Data(p []byte) error
	// Progress reports the bytes the server has sent so far.
	Progress(done int64)
}

// Run sends BASE_BACKUP (sql, from Command.SQL for major) and reads the
// whole answer, feeding the archives to h; start is called once the start
// position and tablespaces are known. It returns the stop position. The
// connection cannot be used for anything else afterwards if it returns an
// error.
func Run(ctx context.Context, conn *pgconn.PgConn, major pgver.Major, sql string,
	start func(Start) error, h Handler) (wal.LSN, wal.TimeLine, error) {
	conn.Frontend().Send(&pgproto3.Query{String: sql})
	if err := conn.Frontend().Flush(); err != nil {
		return 0, 0, fmt.Errorf("send BASE_BACKUP: %w", err)
	}
	r := &reader{ctx: ctx, conn: conn}

	// The start position: one row, then CommandComplete.
	rows, err := r.resultSet(nil)
	if err != nil {
		return 0, 0, err
	}
	var sr Start
	if len(rows) != 1 || len(rows[0]) < 2 {
		return 0, 0, errors.New("BASE_BACKUP: no start position")
	}
	if sr.LSN, sr.Timeline, err = parsePosition(rows[0]); err != nil {
		return 0, 0, err
	}
	// The tablespaces, ended by CommandComplete.
	if rows, err = r.resultSet(nil); err != nil {
		return 0, 0, err
	}
	for _, row := range rows {
		if len(row) < 3 {
			return 0, 0, errors.New("BASE_BACKUP: short tablespace row")
		}
		t := Tablespace{SizeKB: -1}
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

	var first pgproto3.BackendMessage
	if major.LegacyBaseBackup() {
		first, err = readLegacy(r, sr.Tablespaces, h)
	} else {
		err = readTyped(r, h)
	}
	if err != nil {
		return 0, 0, err
	}

	// The stop position, then the command's end.
	if rows, err = r.resultSet(first); err != nil {
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

// readTyped reads PostgreSQL 15's answer: one COPY OUT stream whose
// messages say what they hold.
func readTyped(r *reader, h Handler) error {
	msg, err := r.next()
	if err != nil {
		return err
	}
	if _, ok := msg.(*pgproto3.CopyOutResponse); !ok {
		return fmt.Errorf("BASE_BACKUP: unexpected %T before the data", msg)
	}
	for {
		msg, err := r.next()
		if err != nil {
			return err
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyDone:
			return nil
		case *pgproto3.CopyData:
			if err := dispatch(msg.Data, h); err != nil {
				return err
			}
		default:
			return fmt.Errorf("BASE_BACKUP: unexpected %T in the data", msg)
		}
	}
}

// readLegacy reads PostgreSQL 13 and 14's answer: a COPY OUT stream of
// plain tar data per tablespace, in the order of the tablespace result set
// (the data directory last), then, when asked for, one holding the
// manifest. It returns the message that followed the streams, which starts
// the stop position's result set.
func readLegacy(r *reader, tablespaces []Tablespace, h Handler) (pgproto3.BackendMessage, error) {
	var done int64
	for i := 0; ; i++ {
		msg, err := r.next()
		if err != nil {
			return nil, err
		}
		if _, ok := msg.(*pgproto3.CopyOutResponse); !ok {
			if i < len(tablespaces) {
				return nil, fmt.Errorf("BASE_BACKUP: unexpected %T before archive %d of %d", msg, i+1, len(tablespaces))
			}
			return msg, nil
		}
		switch {
		case i < len(tablespaces):
			t := tablespaces[i]
			name := "base.tar"
			if t.OID != 0 {
				name = strconv.FormatUint(uint64(t.OID), 10) + ".tar"
			}
			err = h.Archive(name, t.Location)
		case i == len(tablespaces):
			err = h.Manifest()
		default:
			return nil, errors.New("BASE_BACKUP: more COPY streams than tablespaces and a manifest")
		}
		if err != nil {
			return nil, err
		}
		for copying := true; copying; {
			msg, err := r.next()
			if err != nil {
				return nil, err
			}
			switch msg := msg.(type) {
			case *pgproto3.CopyDone:
				copying = false
			case *pgproto3.CopyData:
				if err := h.Data(msg.Data); err != nil {
					return nil, err
				}
				if i < len(tablespaces) {
					done += int64(len(msg.Data))
					h.Progress(done)
				}
			default:
				return nil, fmt.Errorf("BASE_BACKUP: unexpected %T in the data", msg)
			}
		}
	}
}

// dispatch hands one typed CopyData message to h.
func dispatch(p []byte, h Handler) error {
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
		return h.Archive(name, location)
	case 'd':
		return h.Data(p[1:])
	case 'p':
		if len(p) >= 9 {
			h.Progress(int64(binary.BigEndian.Uint64(p[1:9])))
		}
		return nil
	case 'm':
		return h.Manifest()
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
// the rows as text (nil for NULL). first, when not nil, is its first
// message, already read.
func (r *reader) resultSet(first pgproto3.BackendMessage) ([][]*string, error) {
	var rows [][]*string
	for {
		msg := first
		first = nil
		if msg == nil {
			var err error
			if msg, err = r.next(); err != nil {
				return nil, err
			}
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
