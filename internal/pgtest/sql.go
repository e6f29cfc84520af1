package pgtest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walship/walship/wal"
)

// queryTimeout bounds one statement of Exec or QueryValue.
const queryTimeout = 60 * time.Second

var errNoRows = errors.New("query returned no rows")

// ConnString returns a connection string for the cluster's superuser and
// database "postgres" over TCP.
func (c *Cluster) ConnString() string {
	return "host=127.0.0.1 port=" + strconv.Itoa(c.Port) + " user=postgres dbname=postgres sslmode=disable"
}

// Exec runs sql on a new connection. Without args, sql may hold several
// statements separated by semicolons.
func (c *Cluster) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.ConnString())
	if err != nil {
		t.Fatalf("connect to cluster %s: %v", c.DataDir, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// QueryValue runs sql on a new connection and returns the first column of
// the first row in PostgreSQL's text form, as psql shows it ("t" for true,
// "0/3000060" for an LSN), or "" for NULL. A query without rows fails the
// test.
func (c *Cluster) QueryValue(t testing.TB, sql string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	v, err := c.queryValue(ctx, sql, args...)
	if err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
	return v
}

// QueryInts runs sql, whose rows hold one integer each, on a new
// connection and returns the set of them.
func (c *Cluster) QueryInts(t testing.TB, sql string, args ...any) map[int]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.ConnString())
	if err != nil {
		t.Fatalf("connect to cluster %s: %v", c.DataDir, err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
	defer rows.Close()
	got := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatalf("query %q: %v", sql, err)
		}
		got[v] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
	return got
}

func (c *Cluster) queryValue(ctx context.Context, sql string, args ...any) (string, error) {
	conn, err := pgx.Connect(ctx, c.ConnString())
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, sql, append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return "", err
		}
		return "", errNoRows
	}
	raw := rows.RawValues()
	if len(raw) == 0 {
		return "", errors.New("query returned no columns")
	}
	v := string(raw[0])
	rows.Close()
	return v, rows.Err()
}

// SwitchWAL makes the server finish its current WAL segment and returns that
// segment's name. It first commits a transaction with an xid, so there is
// always something to switch away from.
func (c *Cluster) SwitchWAL(t testing.TB) string {
	t.Helper()
	c.Exec(t, "SELECT pg_current_xact_id()")
	// The switch returns the first byte after the finished segment; one byte
	// back names the finished segment on every version, whatever
	// pg_walfile_name does at a boundary. The byte back is taken here:
	// pg_lsn - numeric is PostgreSQL 14 and later.
	end, err := wal.ParseLSN(c.QueryValue(t, "SELECT pg_switch_wal()"))
	if err != nil {
		t.Fatalf("pg_switch_wal: %v", err)
	}
	return c.QueryValue(t, "SELECT pg_walfile_name($1::pg_lsn)", (end - 1).String())
}

// WaitArchived waits until a primary has archived seg and every file queued
// before it: no ".ready" status file sorts at or before seg's. The server
// queues a finished segment before pg_switch_wal returns, so this cannot
// pass early; it does not read pg_stat_archiver's last_archived_wal, which
// a backup history file or a timeline history file archived after seg names
// with a lower name (000000010000000000000019.00000028.backup sorts before
// 000000010000000000000187).
func (c *Cluster) WaitArchived(t testing.TB, seg string, timeout time.Duration) {
	t.Helper()
	if n, err := wal.ParseName(seg); err != nil || n.Kind != wal.Segment {
		t.Fatalf("WaitArchived(%q): not a segment name (%v)", seg, err)
	}
	c.WaitFor(t, QueuedThroughSQL(seg), "0", timeout)
}

// QueuedThroughSQL is the query WaitArchived runs: how many files the
// server still has to archive whose names sort at or before seg. For
// servers pgtest does not run (Patroni's), whose own query helpers wait on
// it for 0.
func QueuedThroughSQL(seg string) string {
	return "SELECT count(*) FROM pg_ls_dir('pg_wal/archive_status') f" +
		" WHERE f LIKE '%.ready' AND f <= '" + seg + ".ready'"
}

// WaitFor runs sql until its value (as QueryValue returns it) equals want. A
// failing query, or one without rows, counts as "not yet", so WaitFor also
// waits for a server to accept connections. After timeout it fails the test
// with the last value or error and the tail of the server log.
func (c *Cluster) WaitFor(t testing.TB, sql, want string, timeout time.Duration) {
	t.Helper()
	var last string
	err := poll(timeout, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), min(timeout, 10*time.Second))
		defer cancel()
		v, err := c.queryValue(ctx, sql)
		if err != nil {
			last = "error: " + err.Error()
			return false, nil
		}
		last = fmt.Sprintf("%q", v)
		return v == want, nil
	}, fmt.Sprintf("%q to return %q", sql, want))
	if err != nil {
		t.Fatalf("%v; last got %s\nserver log:\n%s", err, last, c.LogTail(failLogLines))
	}
}
