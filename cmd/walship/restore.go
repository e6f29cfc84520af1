package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/walship/walship/internal/cli"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/sftp"
	"github.com/walship/walship/backup"
	"github.com/walship/walship/wal"
)

// restoreOptions are the settings of walship restore.
type restoreOptions struct {
	Archive        string
	SSH            sshOptions
	PGData         string
	Backup         string
	TargetKind     string
	TargetValue    string
	TargetAction   string
	TargetTimeline string
	Standby        bool
	Trigger        string
	Signal         string   // recovery, standby or none
	TablespaceMap  []string // OLD=NEW
	Force          bool
	Prefetch       int
	Walship        string // the binary restore_command runs; default this one
	JSON           bool
}

// restoreResult is what --json prints.
type restoreResult struct {
	Backup         backup.Meta `json:"backup"`
	PGData         string      `json:"pgdata"`
	RestoreCommand string      `json:"restore_command"`
	Target         string      `json:"target,omitempty"`
}

func restoreCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name: "restore",
		Description: `restore extracts a backup into --pgdata (which must be empty or absent,
unless --force), checks every file against the backup manifest (size and
CRC32C), puts tablespaces back where they were (or where --tablespace-map
says), and writes the recovery settings into postgresql.auto.conf and an
empty recovery.signal. Start the server and it replays the archived WAL
that walship fetch hands it. Run as root, restore gives every file to the
user the server ran as when the backup was taken (if this host has it).

Without --backup, restore picks the newest complete backup that ends before
a --target-time or --target-lsn, or the newest one for other targets, among
those on the history of the timeline recovery ends on (--target-timeline;
latest is the newest archived timeline): after a fork, a newer backup of the
old primary cannot recover onto the new timeline. Which
backup precedes a transaction id or a restore point cannot be known: name
an older one with --backup when the newest is too recent.

Targets (one at most; without one, recovery replays all archived WAL):
   --target-time '2026-11-22 01:15:00+00'   --target-lsn 0/3000060
   --target-xid 1234   --target-name my_restore_point   --target-immediate
--target-action says what the server does there: pause (PostgreSQL's
default; resume with SELECT pg_wal_replay_resume()), promote or shutdown.
--target-timeline: latest (the default), current or a number.

--standby builds a warm standby in pg_standby mode instead: restore_command
is walship wait --trigger FILE, which waits for each segment until
walship promote writes the trigger; recovery_end_command removes it; and
recovery_prefetch is off, since the server's WAL read-ahead would wait in
restore_command while WAL it has read stays unapplied.

--signal says which signal file the restore leaves, and only that one (a
signal file the backup brought along goes):
   recovery (the default): recovery.signal, for point-in-time recovery and
          for --standby; the server promotes at the end of the WAL, or when
          walship wait answers "not found" on a trigger.
   standby: standby.signal, for a standby that streams (add
          primary_conninfo) or follows the archive through walship fetch,
          and is promoted with pg_promote() or walship promote --pg.
   none: neither, for a tool that writes its own, such as Patroni's
          replica method. A recovery.signal left beside the standby.signal
          Patroni writes outlives a promotion, and the next plain restart
          of the new primary would enter archive recovery on a new timeline.

The restored server keeps the backup's postgresql.conf, archive_command
included: once promoted, it archives a new timeline into the archive it
names. Change archive_command first when that is not wanted.

Exit codes: 0 restored; 1 failed (a corrupt backup, a non-empty directory);
2 usage error.`,
		Flags: append([]cli.Flag{
			archiveFlag(),
			&cli.StringFlag{Name: "pgdata", Aliases: []string{"D"}, Usage: "the data directory to create (required)"},
			&cli.StringFlag{Name: "backup", Value: "latest", Usage: "backup `ID` to restore, or latest"},
			&cli.StringFlag{Name: "target-time", Usage: "recover up to this time, with its zone: 2026-11-22 01:15:00+00, 2026-11-22T01:15:00.5Z, " +
				"2026-11-22T02:15:00+01:00, or seconds since the epoch (@1795310100); written as the server prints it"},
			&cli.StringFlag{Name: "target-lsn", Usage: "recover up to this LSN"},
			&cli.StringFlag{Name: "target-xid", Usage: "recover up to this transaction id"},
			&cli.StringFlag{Name: "target-name", Usage: "recover up to this restore point (pg_create_restore_point)"},
			&cli.BoolFlag{Name: "target-immediate", Usage: "recover only until the backup is consistent"},
			&cli.StringFlag{Name: "target-action", Usage: "at the target: promote, pause or shutdown"},
			&cli.StringFlag{Name: "target-timeline", Usage: "latest, current or a timeline number"},
			&cli.BoolFlag{Name: "standby", Usage: "build a pg_standby-mode standby fed by walship wait"},
			&cli.StringFlag{Name: "trigger", Usage: "with --standby: the trigger `FILE` that ends recovery"},
			&cli.StringFlag{Name: "signal", Value: "recovery",
				Usage: "the signal file to leave: recovery (recovery.signal), standby (standby.signal) or none (Patroni writes its own)"},
			&cli.StringSliceFlag{Name: "tablespace-map", Usage: "move a tablespace: `OLD=NEW` directories (repeatable)"},
			&cli.BoolFlag{Name: "force", Usage: "delete what the data and tablespace directories hold first"},
			&cli.IntFlag{Name: "prefetch", Usage: "segments walship fetch downloads ahead during recovery"},
			&cli.StringFlag{Name: "walship", Usage: "path of walship on the server, for restore_command (default: this binary)"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
		}, sshFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("restore takes no arguments; got %d", c.NArg())
			}
			opts := restoreOptions{
				Archive:        c.String("archive"),
				SSH:            sshOptionsFrom(c, g.logger),
				PGData:         c.String("pgdata"),
				Backup:         c.String("backup"),
				TargetAction:   c.String("target-action"),
				TargetTimeline: c.String("target-timeline"),
				Standby:        c.Bool("standby"),
				Trigger:        c.String("trigger"),
				Signal:         c.String("signal"),
				TablespaceMap:  c.StringSlice("tablespace-map"),
				Force:          c.Bool("force"),
				Prefetch:       c.Int("prefetch"),
				Walship:        c.String("walship"),
				JSON:           c.Bool("json"),
			}
			n := 0
			for _, k := range []string{backup.TargetTime, backup.TargetLSN, backup.TargetXID, backup.TargetName} {
				if c.IsSet("target-" + k) {
					opts.TargetKind, opts.TargetValue = k, c.String("target-"+k)
					n++
				}
			}
			if c.Bool("target-immediate") {
				opts.TargetKind = backup.TargetImmediate
				n++
			}
			if n > 1 {
				return usagef("give one recovery target at most")
			}
			return runRestore(c.Context, g, opts)
		},
	}
}

func runRestore(ctx context.Context, g *globals, opts restoreOptions) error {
	target, err := backup.NewTarget(opts.TargetKind, opts.TargetValue, opts.TargetAction, opts.TargetTimeline)
	if err != nil {
		return usageError{err}
	}
	if opts.PGData == "" {
		return usagef("--pgdata is required")
	}
	if opts.Standby && (opts.TargetKind != "" || opts.TargetAction != "") {
		return usagef("--standby takes no recovery target: a standby follows the archive until promoted")
	}
	if opts.Standby != (opts.Trigger != "") {
		return usagef("--standby and --trigger FILE go together")
	}
	if opts.Prefetch < 0 {
		return usagef("--prefetch must not be negative")
	}
	signal, err := backup.ParseSignal(opts.Signal)
	if err != nil {
		return usageError{err}
	}
	if opts.Standby && signal != backup.SignalRecovery {
		return usagef("--standby builds a pg_standby-mode standby, which needs recovery.signal: drop --signal %s", opts.Signal)
	}

	tsMap := map[string]string{}
	for _, kv := range opts.TablespaceMap {
		old, dir, ok := strings.Cut(kv, "=")
		if !ok || !filepath.IsAbs(old) || !filepath.IsAbs(dir) {
			return usagef("--tablespace-map %q: want OLD=NEW, both absolute directories", kv)
		}
		tsMap[filepath.Clean(old)] = filepath.Clean(dir)
	}
	bin := opts.Walship
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return fmt.Errorf("find this walship binary for restore_command: %w; pass --walship", err)
		}
	}
	st, err := openArchive(ctx, opts.Archive, opts.SSH)
	if err != nil {
		return err
	}
	defer st.Close()

	ro := backup.RestoreOptions{
		PGData:        opts.PGData,
		BackupID:      opts.Backup,
		Target:        target,
		TablespaceMap: tsMap,
		Force:         opts.Force,
		Signal:        signal,
		Logger:        g.logger,
	}
	q := backup.ShellQuote
	archiveArgs := q(opts.Archive)
	for _, a := range sshArgs(opts.SSH) {
		archiveArgs += " " + q(a)
	}
	if opts.Standby {
		trig, err := filepath.Abs(opts.Trigger)
		if err != nil {
			return err
		}
		ro.RestoreCommand = fmt.Sprintf("%s wait --archive %s --trigger %s %%f %%p %%r", q(bin), archiveArgs, q(trig))
		ro.RecoveryEndCommand = "rm -f " + q(trig)
		ro.Standby = true
	} else {
		prefetch := ""
		if opts.Prefetch > 0 {
			prefetch = fmt.Sprintf(" --prefetch %d", opts.Prefetch)
		}
		ro.RestoreCommand = fmt.Sprintf("%s fetch --archive %s%s %%f %%p", q(bin), archiveArgs, prefetch)
	}
	tp := newTermProgress(g.stderr)
	ro.Progress = tp.progress()
	if target.Kind == backup.TargetTime {
		warnTargetAfterWAL(ctx, st, target.Time, g.logger)
	}
	m, err := backup.Restore(ctx, st, ro)
	tp.end()
	if err != nil {
		return err
	}
	abs, _ := filepath.Abs(opts.PGData)
	if opts.JSON {
		res := restoreResult{Backup: m, PGData: abs, RestoreCommand: ro.RestoreCommand}
		if target.Kind != "" {
			res.Target = target.Kind + " " + target.Value
		}
		return jsonOut(g.stdout, res)
	}
	what := "all archived WAL"
	switch {
	case opts.Standby:
		what = "archived WAL as a standby until " + opts.Trigger + " appears"
	case target.Kind == backup.TargetImmediate:
		what = "WAL until the backup is consistent"
	case target.Kind != "":
		what = fmt.Sprintf("archived WAL up to %s %s", target.Kind, target.Value)
	}
	fmt.Fprintf(g.stdout, "restored backup %s (%s, %d files) into %s; on start the server replays %s\n",
		m.ID, humanBytes(m.Size), m.Files, abs, what)
	return nil
}

// sshArgs returns the command line flags that give the SSH settings o
// differs in from the defaults, for the restore_command and the prefetcher
// to reach an sftp:// archive as this walship did.
func sshArgs(o sshOptions) []string {
	var args []string
	for _, id := range o.Identities {
		args = append(args, "--identity", id)
	}
	if o.KnownHosts != "" {
		args = append(args, "--known-hosts", o.KnownHosts)
	}
	if o.HostKeyPolicy != "" && o.HostKeyPolicy != sftp.Strict.String() {
		args = append(args, "--host-key-policy", o.HostKeyPolicy)
	}
	if o.HostKeyFingerprint != "" {
		args = append(args, "--host-key-fingerprint", o.HostKeyFingerprint)
	}
	if o.Timeout != 0 && o.Timeout != sftp.DefaultIOTimeout {
		args = append(args, "--ssh-timeout", o.Timeout.String())
	}
	args = append(args, s3Args(o)...)
	return append(args, cryptArgs(o)...)
}

// warnTargetAfterWAL warns when a target time lies after the newest archived
// segment: recovery would run out of WAL before it, and PostgreSQL then
// stops with "FATAL: recovery ended before configured recovery target was
// reached" instead of promoting.
func warnTargetAfterWAL(ctx context.Context, st archive.Storage, target time.Time, logger *slog.Logger) {
	files, _, err := archive.ListWAL(ctx, st)
	if err != nil {
		logger.Debug("cannot list the archive's WAL to check the target time", "err", err)
		return
	}
	var newest archive.FileInfo
	for _, fi := range files {
		n, err := wal.ParseName(archive.TrimCompression(fi.Name))
		if err == nil && (n.Kind == wal.Segment || n.Kind == wal.Partial) && fi.ModTime.After(newest.ModTime) {
			newest = fi
		}
	}
	if newest.Name == "" || !target.After(newest.ModTime) {
		return
	}
	logger.Warn("the recovery target time is after the newest archived WAL: unless WAL up to the target is archived "+
		"before recovery gets there, PostgreSQL stops with FATAL \"recovery ended before configured recovery target was reached\"; "+
		"pick an earlier --target-time, or run recovery without a target",
		"target_time", target.UTC().Format(time.RFC3339), "newest_segment", archive.TrimCompression(newest.Name),
		"archived_at", newest.ModTime.UTC().Format(time.RFC3339))
}
