package backup

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walship/walship/internal/basebackup"
	"github.com/walship/walship/internal/pgver"
	"github.com/walship/walship/wal"
)

// The replication protocol itself, in each major's dialect, is
// internal/basebackup's; this file holds what walship backup asks of it.

// serverInfo is what a backup records about the server.
type serverInfo struct {
	SystemID    uint64
	Timeline    wal.TimeLine
	Version     int // server_version_num
	Major       pgver.Major
	SegmentSize int64
	BlockSize   int
	InRecovery  bool
}

// identify asks the server who it is, on a replication connection, and
// refuses a major walship backup does not support.
func identify(ctx context.Context, conn *pgconn.PgConn) (serverInfo, error) {
	var si serverInfo
	row, err := basebackup.QueryRow(ctx, conn, "IDENTIFY_SYSTEM")
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
	v, err := basebackup.Show(ctx, conn, "server_version_num")
	if err != nil {
		return si, err
	}
	if si.Version, err = strconv.Atoi(v); err != nil {
		return si, fmt.Errorf("server_version_num %q: %w", v, err)
	}
	si.Major = pgver.FromVersionNum(si.Version)
	if err := si.Major.CheckBackup(); err != nil {
		return si, fmt.Errorf("%w (server_version %s)", err, conn.ParameterStatus("server_version"))
	}
	for _, s := range []struct {
		name string
		dst  *int64
	}{{"wal_segment_size", &si.SegmentSize}, {"wal_block_size", nil}} {
		v, err := basebackup.Show(ctx, conn, s.name)
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
	if si.InRecovery, err = basebackup.InRecovery(ctx, conn); err != nil {
		return si, err
	}
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

// ServerWorkers is how many threads the server compresses with when
// Options.CompressOnServer is set.
const ServerWorkers = 2

// serverCompressionDetail is BASE_BACKUP's COMPRESSION_DETAIL; a test sets
// a value the server refuses, to exercise the fallback.
var serverCompressionDetail = fmt.Sprintf("level=1,workers=%d", ServerWorkers)

// baseBackupCommand is the BASE_BACKUP walship backup sends. No WAL: the
// archive has it, and Backup waits for it there, with a timeout and a
// message. TABLESPACE_MAP: tablespaces are listed in a tablespace_map file
// instead of symbolic links, so restore can move them. serverZstd asks the
// server to compress each archive with zstd (level 1, ServerWorkers
// threads), as pg_basebackup --compress=server-zstd does. maxRateKB, when
// not 0, is MAX_RATE: the most KiB the server sends a second.
func baseBackupCommand(major pgver.Major, label string, fast, progress, serverZstd bool, maxRateKB int64, incremental bool) (string, error) {
	c := basebackup.Command{Label: label, FastCheckpoint: fast, Progress: progress,
		Manifest: true, TablespaceMap: true, MaxRateKB: maxRateKB, Incremental: incremental}
	if serverZstd {
		c.ServerZstd = serverCompressionDetail
	}
	return c.SQL(major)
}
