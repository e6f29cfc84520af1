package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/walship/walship/internal/cli"

	"github.com/walship/walship/trigger"
)

// defaultPromoteTimeout is pg_promote()'s own default wait.
const defaultPromoteTimeout = 60 * time.Second

// promoteGrace is how much longer than pg_promote() waits the command waits
// for its answer, so that the server, not a cancelled query, reports a
// promotion that takes too long.
const promoteGrace = 10 * time.Second

// promoteOptions are the settings of walship promote.
type promoteOptions struct {
	Trigger string        // the trigger file of a pg_standby-mode standby
	Fast    bool          // with Trigger: a fast failover
	PG      string        // or: the connection string of a standby.signal standby
	Wait    bool          // with PG: wait until recovery has ended
	Timeout time.Duration // with PG: zero means defaultPromoteTimeout
	JSON    bool
}

// promoteResult is what walship promote reports; --json prints it as it is.
type promoteResult struct {
	Method   string `json:"method"`            // "trigger" or "pg_promote"
	Trigger  string `json:"trigger,omitempty"` // the file written, absolute
	Mode     string `json:"mode,omitempty"`    // smart or fast (trigger only)
	Wait     bool   `json:"wait"`              // pg_promote waited for the end of recovery
	Promoted bool   `json:"promoted"`          // recovery is known to have ended
	Message  string `json:"message"`
}

func promoteCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:      "promote",
		UsageText: "walship promote --trigger FILE [--fast]\nwalship promote --pg CONNSTR [--wait] [--timeout 60s]",
		Description: `promote ends the recovery of a standby, which then becomes a primary on a
new timeline.

A warm standby in pg_standby mode has an empty recovery.signal file in its
data directory (not standby.signal) and waits for each WAL segment in
walship wait, its restore_command. It promotes when walship wait answers
"not found", which walship wait does only once a trigger file asks it to.
In the standby's postgresql.conf:
   restore_command = 'walship wait --archive /srv/walship/main --trigger /var/lib/postgresql/walship.trigger %f %p %r'
   recovery_end_command = 'rm -f /var/lib/postgresql/walship.trigger'
recovery_end_command removes the trigger once recovery has ended. Do not
leave it out: a stale trigger file promotes the next standby started with
it, at once and without applying the WAL it was meant to wait for.

   walship promote --trigger /var/lib/postgresql/walship.trigger
      smart failover (the default): the standby restores every segment
      already in the archive, then ends recovery. Nothing archived is lost.
   walship promote --trigger /var/lib/postgresql/walship.trigger --fast
      fast failover: the standby ends recovery at once. Segments archived
      but not yet restored are not applied, and their transactions are
      missing on the new timeline. walship wait then rewrites the file to
      "smart", so that a segment the server asks for again is still served.
      Sending SIGUSR1 to walship wait is a fast failover too, as it was for
      pg_standby.
The file is replaced atomically and made readable by all, so root may write
it; its directory must exist. --trigger can come from WALSHIP_TRIGGER.

A standby with standby.signal (streaming, or walship fetch as its
restore_command) is promoted by PostgreSQL itself: --pg CONNSTR calls
pg_promote() on it (PostgreSQL 12 or later, as a superuser or a role granted
EXECUTE on pg_promote). CONNSTR is a libpq connection string or URL, such as
"host=standby1 user=postgres" or postgres://postgres@standby1/postgres; what
it leaves out comes from the PG* environment variables (PGHOST, PGPORT,
PGUSER, PGPASSWORD, PGSSLMODE, ...), so --pg postgres:// takes them all from
there. The server applies the WAL it can still get from the archive and
pg_wal, then promotes; there is no fast mode. Without --wait, promote returns
once the server has the request; with --wait, once recovery has ended, or
fails after --timeout. pg_promote() cannot end a pg_standby-mode recovery,
so promote refuses a standby whose restore_command is walship wait.

Exit codes: 0 done (trigger written; promotion requested or, with --wait,
finished); 1 failed (not a standby, unreachable, or not promoted in time);
2 usage error.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "trigger", EnvVars: []string{"WALSHIP_TRIGGER"},
				Usage: "the trigger `FILE` that the standby's walship wait --trigger watches"},
			&cli.BoolFlag{Name: "fast",
				Usage: "with --trigger: end recovery now, without restoring the archived segments not yet applied"},
			&cli.StringFlag{Name: "pg",
				Usage: "promote the standby.signal standby at `CONNSTR` (libpq connection string or URL) with pg_promote()"},
			&cli.BoolFlag{Name: "wait",
				Usage: "with --pg: wait until the server has ended recovery"},
			&cli.DurationFlag{Name: "timeout", DefaultText: defaultPromoteTimeout.String(),
				Usage: "with --pg: how long to wait (a `DURATION` such as 90s) for the server and, with --wait, for the promotion"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as a JSON object"},
		},
		// A bad flag of a subcommand does not reach the app's OnUsageError.
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("promote takes no arguments; got %q (the trigger file goes after --trigger)", c.Args().Slice())
			}
			return runPromote(c.Context, g, promoteOptions{
				Trigger: c.String("trigger"),
				Fast:    c.Bool("fast"),
				PG:      c.String("pg"),
				Wait:    c.Bool("wait"),
				Timeout: c.Duration("timeout"),
				JSON:    c.Bool("json"),
			})
		},
	}
}

func runPromote(ctx context.Context, g *globals, opts promoteOptions) error {
	var res promoteResult
	var err error
	switch {
	case opts.Trigger == "" && opts.PG == "":
		return usagef("promote needs --trigger FILE, for a pg_standby-mode standby (recovery.signal, " +
			"restore_command walship wait --trigger FILE), or --pg CONNSTR, for a standby.signal standby " +
			"(pg_promote())")
	case opts.Trigger != "" && opts.PG != "":
		return usagef("--trigger (or WALSHIP_TRIGGER) and --pg are two ways to promote: give one")
	case opts.PG != "":
		if opts.Fast {
			return usagef("--fast works with --trigger only: pg_promote() has no fast mode")
		}
		if opts.Timeout < 0 {
			return usagef("--timeout %v: must be positive", opts.Timeout)
		}
		res, err = promotePG(ctx, g, opts)
	default:
		if opts.Wait || opts.Timeout != 0 {
			return usagef("--wait and --timeout work with --pg only")
		}
		res, err = promoteTrigger(g, opts)
	}
	if err != nil {
		return err
	}
	if opts.JSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetEscapeHTML(false)
		return enc.Encode(res)
	}
	_, err = fmt.Fprintln(g.stdout, res.Message)
	return err
}

func promoteTrigger(g *globals, opts promoteOptions) (promoteResult, error) {
	m := trigger.Smart
	msg := "smart failover requested: the standby applies every archived segment, then ends recovery"
	if opts.Fast {
		m = trigger.Fast
		msg = "fast failover requested: the standby ends recovery now, without the archived segments it has not restored yet"
	}
	if err := trigger.Write(opts.Trigger, m); err != nil {
		return promoteResult{}, err
	}
	path := opts.Trigger
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	g.logger.Debug("trigger written", "path", path, "mode", m)
	return promoteResult{Method: "trigger", Trigger: path, Mode: m.String(), Message: msg}, nil
}

func promotePG(ctx context.Context, g *globals, opts promoteOptions) (promoteResult, error) {
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = defaultPromoteTimeout
	}
	cfg, err := pgx.ParseConfig(opts.PG)
	if err != nil {
		return promoteResult{}, usageError{fmt.Errorf("--pg: %w", err)}
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "walship promote"
	}
	ctx, cancel := context.WithTimeout(ctx, timeout+promoteGrace)
	defer cancel()
	res, err := callPromote(ctx, g, cfg, opts.Wait, timeout)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return res, fmt.Errorf("promote %s: no answer within %v: %w", serverName(cfg), timeout+promoteGrace, err)
	}
	return res, err
}

func callPromote(ctx context.Context, g *globals, cfg *pgx.ConnConfig, wait bool, timeout time.Duration) (promoteResult, error) {
	server := serverName(cfg)
	res := promoteResult{Method: "pg_promote", Wait: wait}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return res, fmt.Errorf("promote: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(cctx)
	}()

	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return res, fmt.Errorf("promote %s: %w", server, err)
	}
	if !inRecovery {
		return res, fmt.Errorf("promote %s: server is not in recovery: already a primary?", server)
	}
	// Reading restore_command needs privileges a role allowed to call
	// pg_promote() may lack; then promote goes ahead unchecked.
	var restore *string
	if err := conn.QueryRow(ctx, "SELECT current_setting('restore_command', true)").Scan(&restore); err == nil &&
		restore != nil && restoreCommandWaits(*restore) {
		return res, fmt.Errorf("promote %s: its restore_command is walship wait (pg_standby mode), whose recovery "+
			"pg_promote() cannot end: run walship promote --trigger FILE with the file given to walship wait --trigger", server)
	}

	secs := int32(min(math.Ceil(timeout.Seconds()), math.MaxInt32))
	g.logger.Debug("calling pg_promote()", "server", server, "wait", wait, "wait_seconds", secs)
	var ok bool
	err = conn.QueryRow(ctx, "SELECT pg_promote(wait => $1, wait_seconds => $2)", wait, max(secs, 1)).Scan(&ok)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42883": // undefined_function
		return res, fmt.Errorf("promote %s: pg_promote() needs PostgreSQL 12 or later; on older servers run pg_ctl promote on the standby's host", server)
	case errors.As(err, &pgErr) && pgErr.Code == "42501": // insufficient_privilege
		return res, fmt.Errorf("promote %s: %w: connect as a superuser, or GRANT EXECUTE ON FUNCTION pg_promote TO %s", server, err, cfg.User)
	case errors.As(err, &pgErr) && pgErr.Code == "55000": // object_not_in_prerequisite_state
		return res, fmt.Errorf("promote %s: server is not in recovery: already a primary? (%w)", server, err)
	case err != nil:
		return res, fmt.Errorf("promote %s: %w", server, err)
	case !ok && wait:
		return res, fmt.Errorf("promote %s: the server did not end recovery within %v; it may still: check SELECT pg_is_in_recovery()", server, timeout)
	case !ok:
		return res, fmt.Errorf("promote %s: pg_promote() could not signal the postmaster; see the server log", server)
	case wait:
		res.Promoted = true
		res.Message = "promoted: the server ended recovery and is a primary now"
	default:
		res.Message = "promotion requested: the server applies the WAL it can still get, then ends recovery; " +
			"SELECT pg_is_in_recovery() returns false once it has"
	}
	return res, nil
}

// restoreCommandWaits reports whether a restore_command runs walship wait:
// the first word after a walship program name that is not a flag (or the
// value of one of walship's global flags) is "wait". It reads words, not
// shell syntax, which is enough for the commands people write.
func restoreCommandWaits(cmd string) bool {
	words := strings.Fields(cmd)
	for i, w := range words {
		if strings.HasPrefix(w, "#") {
			return false // a shell comment
		}
		if filepath.Base(strings.Trim(w, `"'`)) != "walship" {
			continue
		}
		for j := i + 1; j < len(words); j++ {
			next := strings.Trim(words[j], `"'`)
			switch {
			case strings.HasPrefix(next, "#"):
				return false
			case next == "--log-level" || next == "--log-format":
				j++ // its value
			case strings.HasPrefix(next, "-"):
			default:
				if next == "wait" {
					return true
				}
				j = len(words)
			}
		}
	}
	return false
}

// serverName names the server for messages, without the password.
func serverName(cfg *pgx.ConnConfig) string {
	if strings.HasPrefix(cfg.Host, "/") {
		return fmt.Sprintf("%s/.s.PGSQL.%d", cfg.Host, cfg.Port)
	}
	return fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
}
