package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/walship/walship/internal/cli"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/backup"
	"github.com/walship/walship/wal"
)

// checkOptions are the settings of walship check.
type checkOptions struct {
	Archive string
	SSH     sshOptions
	DSN     string
	Timeout time.Duration
	// Poll is how often to look for the segment; tests shorten it.
	Poll time.Duration
}

// DefaultCheckTimeout is how long walship check waits for its segment.
const DefaultCheckTimeout = time.Minute

func checkCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:      "check",
		UsageText: "walship check --archive URL --dsn CONNSTR [--timeout 1m]",
		Description: `check proves that archiving works, as pgbackrest check does. It connects to
the primary and checks its settings against the archive:
   wal_level           replica or logical
   archive_mode        on (or always)
   archive_library     empty (PostgreSQL 15 and later): it would replace archive_command
   archive_command     runs walship push; it should name this archive (only a
                       note when it does not: the archive may come from
                       WALSHIP_ARCHIVE or a config file, and the test below tells)
   system identifier   the server's is the archive's (walship.json)
Then it writes a restore point, forces a WAL switch (pg_switch_wal()) and
waits, up to --timeout, until the segment that the switch finished is in the
archive; it reads that segment back in full and verifies it as walship
verify does (checksum, size, page header, system identifier). While it
waits it watches pg_stat_archiver: when the server reports the segment
archived and it is not in this archive, archive_command archives elsewhere,
and check says so at once; failures of archive_command are reported with
the timeout.

The role needs to run pg_create_restore_point() and pg_switch_wal() (a
superuser, or EXECUTE granted on both) and to read the settings
(pg_read_all_settings or pg_monitor).

Exit codes: 0 archiving works; 1 it does not, or the server or the archive
cannot be reached (the reason is printed); 2 usage error.`,
		Flags: append([]cli.Flag{
			archiveFlag(),
			&cli.StringFlag{Name: "dsn", EnvVars: []string{"WALSHIP_DSN"},
				Usage: "connection string of the primary (default: the PG* environment variables)"},
			&cli.DurationFlag{Name: "timeout", Value: DefaultCheckTimeout, EnvVars: []string{"WALSHIP_CHECK_TIMEOUT"},
				Usage: "how long to wait for the switched segment to be archived"},
		}, sshFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("check takes no arguments; got %d", c.NArg())
			}
			return runCheck(c.Context, g, checkOptions{Archive: c.String("archive"), SSH: sshOptionsFrom(c, g.logger),
				DSN: c.String("dsn"), Timeout: c.Duration("timeout")})
		},
	}
}

// serverSettings are what check reads of the server.
type serverSettings struct {
	archiveMode, archiveCommand, archiveLibrary, walLevel string
	systemID                                              uint64
	inRecovery                                            bool
	version                                               int
}

func runCheck(ctx context.Context, g *globals, opts checkOptions) error {
	if opts.Timeout <= 0 {
		return usagef("--timeout %v: use a positive duration", opts.Timeout)
	}
	if opts.Poll <= 0 {
		opts.Poll = 200 * time.Millisecond
	}
	u, err := archive.ParseURL(opts.Archive)
	if opts.Archive != "" && err != nil {
		return usageError{err}
	}
	st, err := openArchive(ctx, opts.Archive, opts.SSH)
	if err != nil {
		return err
	}
	defer st.Close()
	out := g.stdout
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	conn, err := pgx.Connect(cctx, opts.DSN)
	if err != nil {
		return fmt.Errorf("connect to the server: %w", err)
	}
	defer conn.Close(context.Background())
	s, err := readServerSettings(cctx, conn)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "server: system identifier %d, PostgreSQL %d\n", s.systemID, s.version)
	id, err := archive.ReadIdentityOrFlat(cctx, st)
	haveID := err == nil
	if err != nil && !errors.Is(err, archive.ErrNoIdentity) {
		return fmt.Errorf("read the archive's identity: %w", err)
	}
	if problems := checkSettings(out, s, u, opts.Archive, id, haveID, st.String()); len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(out, "problem: %s\n", p)
		}
		return fmt.Errorf("archiving into %s is not set up right: %s", st, problems[0])
	}

	seg, err := switchWAL(cctx, conn)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "switched WAL: waiting up to %v for %s in %s\n", opts.Timeout, seg, st)
	before, err := readArchiver(cctx, conn)
	if err != nil {
		return err
	}
	if err := waitArchived(cctx, conn, st, seg, opts.Poll); err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return timeoutError(conn, seg, st, opts.Timeout, before)
		}
		return err
	}
	if !haveID {
		if id, err = archive.ReadIdentity(cctx, st); err != nil {
			return fmt.Errorf("%s is archived, but the archive's identity: %w", seg, err)
		}
		if id.SystemID != s.systemID {
			return fmt.Errorf("%s belongs to system %d, the server is %d: archive_command archives another cluster's WAL here", st, id.SystemID, s.systemID)
		}
	}
	if err := backup.VerifyWAL(cctx, st, seg, id); err != nil {
		return fmt.Errorf("%s is archived but does not verify: %w", seg, err)
	}
	fmt.Fprintf(out, "archiving works: %s archived into %s and verified, %.1fs after the switch\n",
		seg, st, time.Since(start).Seconds())
	return nil
}

func readServerSettings(ctx context.Context, conn *pgx.Conn) (serverSettings, error) {
	var s serverSettings
	var sysid string
	err := conn.QueryRow(ctx, `SELECT current_setting('archive_mode'), current_setting('archive_command'),
		coalesce(current_setting('archive_library', true), ''), current_setting('wal_level'),
		(SELECT system_identifier::text FROM pg_control_system()), pg_is_in_recovery(),
		current_setting('server_version_num')::int`).Scan(
		&s.archiveMode, &s.archiveCommand, &s.archiveLibrary, &s.walLevel, &sysid, &s.inRecovery, &s.version)
	if err != nil {
		return s, fmt.Errorf("read the server's settings: %w", err)
	}
	if s.systemID, err = strconv.ParseUint(sysid, 10, 64); err != nil {
		return s, fmt.Errorf("the server's system identifier %q: %w", sysid, err)
	}
	return s, nil
}

// checkSettings prints what is right and returns what is wrong with the
// server's settings for archiving into the archive (raw as given, u
// parsed, named name).
func checkSettings(out io.Writer, s serverSettings, u archive.URL, raw string, id archive.Identity, haveID bool, name string) []string {
	var problems []string
	ok := func(format string, args ...any) { fmt.Fprintf(out, "ok: "+format+"\n", args...) }
	if s.inRecovery {
		problems = append(problems, "the server is a standby: pg_switch_wal() runs on the primary; run walship check against the primary")
	}
	switch s.walLevel {
	case "replica", "logical":
		ok("wal_level = %s", s.walLevel)
	default:
		problems = append(problems, fmt.Sprintf("wal_level = %s: set wal_level = replica, and restart the server", s.walLevel))
	}
	switch s.archiveMode {
	case "on", "always":
		ok("archive_mode = %s", s.archiveMode)
	default:
		problems = append(problems, fmt.Sprintf("archive_mode = %s: set archive_mode = on, and restart the server", s.archiveMode))
	}
	if s.archiveLibrary != "" {
		problems = append(problems, fmt.Sprintf("archive_library = '%s' archives instead of archive_command: set archive_library = ''", s.archiveLibrary))
	}
	cmd := s.archiveCommand
	switch {
	case !strings.Contains(cmd, "walship") || !strings.Contains(cmd, "push"):
		problems = append(problems, fmt.Sprintf("archive_command = '%s' does not run walship push: set archive_command = 'walship push --archive %s %%p %%f'", cmd, name))
	case raw != "" && (strings.Contains(cmd, raw) || strings.Contains(cmd, u.String())):
		ok("archive_command runs walship push into %s", name)
	default:
		fmt.Fprintf(out, "note: archive_command = '%s' does not name %s: it must get the archive from WALSHIP_ARCHIVE or a config file\n", cmd, name)
	}
	switch {
	case haveID && id.SystemID == s.systemID:
		ok("the archive belongs to the server (system identifier %d)", id.SystemID)
	case haveID:
		problems = append(problems, fmt.Sprintf("%s belongs to system %d, the server is %d: wrong archive (use one archive per cluster)", name, id.SystemID, s.systemID))
	default:
		fmt.Fprintf(out, "note: %s has no walship.json yet: the first segment pushed records it\n", name)
	}
	return problems
}

// switchWAL writes a restore point, so that there is WAL to switch away
// from, switches, and returns the name of the segment the switch finished.
func switchWAL(ctx context.Context, conn *pgx.Conn) (string, error) {
	var end string
	if _, err := conn.Exec(ctx, "SELECT pg_create_restore_point('walship check')"); err != nil {
		return "", fmt.Errorf("pg_create_restore_point: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_switch_wal()::text").Scan(&end); err != nil {
		return "", fmt.Errorf("pg_switch_wal: %w", err)
	}
	lsn, err := wal.ParseLSN(end)
	if err != nil {
		return "", fmt.Errorf("pg_switch_wal returned %q: %w", end, err)
	}
	// The switch returns the end of the finished segment, plus one: at a
	// segment boundary pg_walfile_name would name the next one on
	// PostgreSQL 17 and later.
	var seg string
	if err := conn.QueryRow(ctx, "SELECT pg_walfile_name($1::text::pg_lsn)", (lsn - 1).String()).Scan(&seg); err != nil {
		return "", fmt.Errorf("pg_walfile_name: %w", err)
	}
	return seg, nil
}

// archiverState is pg_stat_archiver.
type archiverState struct {
	archivedWAL, failedWAL string
	failed                 int64
	failedAt               *time.Time
}

func readArchiver(ctx context.Context, conn *pgx.Conn) (archiverState, error) {
	var a archiverState
	var archived, failed *string
	err := conn.QueryRow(ctx, "SELECT last_archived_wal, last_failed_wal, failed_count, last_failed_time FROM pg_stat_archiver").
		Scan(&archived, &failed, &a.failed, &a.failedAt)
	if err != nil {
		return a, fmt.Errorf("read pg_stat_archiver: %w", err)
	}
	if archived != nil {
		a.archivedWAL = *archived
	}
	if failed != nil {
		a.failedWAL = *failed
	}
	return a, nil
}

// waitArchived polls st until seg is archived, or ctx is done. When the
// server says it archived seg (or a later segment) and st still lacks it,
// the server archives elsewhere: an error at once.
func waitArchived(ctx context.Context, conn *pgx.Conn, st archive.Storage, seg string, poll time.Duration) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		_, _, err := archive.StatWAL(ctx, st, seg)
		if err == nil {
			return nil
		}
		if !archive.IsNotExist(err) {
			return fmt.Errorf("look for %s in %s: %w", seg, st, err)
		}
		a, err := readArchiver(ctx, conn)
		if err != nil {
			return err
		}
		if a.archivedWAL >= seg && len(a.archivedWAL) == len(seg) {
			if _, _, err := archive.StatWAL(ctx, st, seg); err == nil {
				return nil
			}
			return fmt.Errorf("the server archived %s (pg_stat_archiver), but it is not in %s: archive_command archives elsewhere", seg, st)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// timeoutError explains why seg did not arrive in time, from what
// pg_stat_archiver says now.
func timeoutError(conn *pgx.Conn, seg string, st archive.Storage, timeout time.Duration, before archiverState) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msg := fmt.Sprintf("%s was not archived into %s within %v", seg, st, timeout)
	a, err := readArchiver(ctx, conn)
	switch {
	case err != nil:
	case a.failed > before.failed && a.failedAt != nil:
		msg += fmt.Sprintf(": archive_command failed %d times meanwhile, the last for %s at %s; the server's log says why",
			a.failed-before.failed, a.failedWAL, a.failedAt.Format(time.RFC3339))
	default:
		msg += ": archive_command neither succeeded nor failed meanwhile (slow, hanging, or the archiver is behind); the server's log may say more"
	}
	return errors.New(msg)
}
