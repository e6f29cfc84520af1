package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/walship/walship/internal/cli"
	"golang.org/x/sys/unix"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/backup"
)

// backupOptions are the settings of walship backup.
type backupOptions struct {
	Archive        string
	SSH            sshOptions
	DSN            string
	Label          string
	FastCheckpoint bool
	Compress       string
	CompressOn     string
	WALTimeout     time.Duration
	JSON           bool
	FromStandby    bool
	MaxRate        string // pg_basebackup's form: kB/s, or with k or M
	StaleAfter     time.Duration
	Incremental    string // "", "true", "auto"
	Parent         string
}

// incrementalFlag is --incremental, which takes no value (on) or one
// (--incremental=auto).
type incrementalFlag struct{ v string }

func (f *incrementalFlag) Set(s string) error {
	_, err := backup.ParseIncrementalMode(s)
	f.v = s
	return err
}
func (f *incrementalFlag) String() string   { return f.v }
func (f *incrementalFlag) IsBoolFlag() bool { return true }

func backupCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name: "backup",
		Description: `backup copies the whole cluster (every tablespace) over a replication
connection (BASE_BACKUP, PostgreSQL 13 or later) into backups/<id>/ in the
archive, compressed, with PostgreSQL's backup manifest (a CRC32C for every
file). The id is the UTC start time, like 20261122T011500Z.

The backup holds no WAL: it needs the WAL from its start to its stop
position from the archive, where archive_command (walship push) puts it. So
backup waits, up to --wal-timeout, until that WAL is archived, and only then
writes backups/<id>.json, which makes the backup complete. A backup that
fails or is interrupted has none, and restore never uses it.

While it runs, from the moment the server names the start position, backup
keeps a marker in backups/<id>/inprogress-<n>.json (start LSN, timeline,
start time, host, pid), renewed every minute (every quarter of --stale-after
if that is shorter), so that walship cleanup, wait --cleanup and expire keep
the WAL it needs even before any backup is complete. The marker goes when
the backup completes or fails; one left by a backup that was killed stops
protecting WAL once it is --stale-after old, and expire removes that
backup. A backup refuses to complete when it could not renew its marker for
--stale-after: its WAL or files may be gone.

--max-rate limits how fast the server sends the backup, as pg_basebackup's
does (in kB/s, or with a k or M suffix: 32k to 1024M), to spare the server's
disks and network; with the server compressing it counts compressed bytes.

From a primary the server switches WAL segment when the backup ends, so the
wait is short. From a standby (hot_standby on, a replication line in its
pg_hba.conf) nothing switches: the last segment reaches the archive when the
primary fills or switches it. Set archive_timeout on the primary, or run
SELECT pg_switch_wal() there, or raise --wal-timeout. The primary must
archive into this same archive.

The server needs wal_level replica or higher, max_wal_senders > 0 and a
"replication" line in pg_hba.conf for the user; the connection comes from
--dsn and the usual PG* environment variables.

By default the server compresses (zstd level 1 on two threads, PostgreSQL
built with zstd, as Debian's and the PGDG packages are): that spends less
CPU in all than walship compressing, and sends a twentieth of the bytes over
the network. --compress-on client moves the work to walship, for a server
whose CPU is scarcer than its network; a server that cannot compress (built
without zstd, or PostgreSQL 13 and 14, which have no server-side
compression) gets that too. Either way restore checks every file
against the manifest's CRC32C.

--incremental (PostgreSQL 17 and later, summarize_wal = on) takes an
incremental backup: walship uploads the parent backup's manifest
(UPLOAD_MANIFEST) and the server sends only the blocks changed since (WAL
summaries), with the same manifest, checksums and completion rules as a
full backup. The parent is the newest complete backup, or --parent ID; an
incremental backup may build on another, in chains of any length, and
walship restore rebuilds every file from the chain in one pass. A server
that cannot (older than 17, summarize_wal off, the WAL summaries since the
parent gone) fails with the fix; --incremental=auto takes a full backup
then instead, and logs why.

Progress goes to stderr when it is a terminal; a summary to stdout, as JSON
with --json.

Exit codes: 0 complete; 1 failed (the backup is not listed); 2 usage error.`,
		Flags: append([]cli.Flag{
			archiveFlag(),
			&cli.StringFlag{Name: "dsn", EnvVars: []string{"WALSHIP_DSN"},
				Usage: "connection string of the server to back up (libpq form or URL); PG* variables fill in the rest"},
			&cli.StringFlag{Name: "label", Usage: "backup label (default \"walship <id>\")"},
			&cli.BoolFlag{Name: "fast-checkpoint", Usage: "start with an immediate checkpoint instead of waiting for a spread one"},
			&cli.StringFlag{Name: "compress", Value: "zstd", EnvVars: []string{"WALSHIP_COMPRESS"}, Usage: "zstd or none (s2 means zstd here: S2 is for push's WAL segments)"},
			&cli.StringFlag{Name: "compress-on", Value: "server", EnvVars: []string{"WALSHIP_COMPRESS_ON"},
				Usage: "who compresses: server (PostgreSQL, zstd level 1 on 2 threads: a twentieth of the bytes on the network, less CPU in all) or client (walship, when the server's CPU is scarcer than the network)"},
			&cli.DurationFlag{Name: "wal-timeout", Value: backup.DefaultWALTimeout,
				Usage: "how long to wait for the WAL the backup needs to be archived"},
			&cli.BoolFlag{Name: "json", Usage: "print the backup's description as JSON"},
			&cli.BoolFlag{Name: "from-standby", EnvVars: []string{"WALSHIP_FROM_STANDBY"},
				Usage: "back up a standby too; without it, backup of a standby takes nothing and exits 0, so one timer can run on every node"},
			&cli.StringFlag{Name: "max-rate", EnvVars: []string{"WALSHIP_MAX_RATE"},
				Usage: "the most the server sends a second, in kB, or with a k or M suffix (32k to 1024M); default no limit"},
			staleAfterFlag(),
			&cli.GenericFlag{Name: "incremental", Value: &incrementalFlag{}, EnvVars: []string{"WALSHIP_INCREMENTAL"},
				Usage: "take an incremental backup (PostgreSQL 17+, summarize_wal on); =auto takes a full one where the server cannot"},
			&cli.StringFlag{Name: "parent", Usage: "with --incremental: the backup `ID` to build on (default: the newest)"},
		}, sshFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("backup takes no arguments; got %d", c.NArg())
			}
			inc := ""
			if f, ok := c.Generic("incremental").(*incrementalFlag); ok {
				inc = f.v
			}
			return runBackup(c.Context, g, backupOptions{
				Archive:        c.String("archive"),
				SSH:            sshOptionsFrom(c, g.logger),
				DSN:            c.String("dsn"),
				Label:          c.String("label"),
				FastCheckpoint: c.Bool("fast-checkpoint"),
				Compress:       c.String("compress"),
				CompressOn:     c.String("compress-on"),
				WALTimeout:     c.Duration("wal-timeout"),
				JSON:           c.Bool("json"),
				FromStandby:    c.Bool("from-standby"),
				MaxRate:        c.String("max-rate"),
				StaleAfter:     c.Duration("stale-after"),
				Incremental:    inc,
				Parent:         c.String("parent"),
			})
		},
	}
}

func runBackup(ctx context.Context, g *globals, opts backupOptions) error {
	comp, err := archive.ParseCompression(opts.Compress)
	if err != nil {
		return usageError{err}
	}
	comp = comp.ForFiles() // a base backup's files stay zstd
	if opts.WALTimeout < 0 {
		return usagef("--wal-timeout must not be negative")
	}
	if opts.CompressOn != "server" && opts.CompressOn != "client" {
		return usagef("--compress-on must be server or client, not %q", opts.CompressOn)
	}
	maxRate, err := parseRate(opts.MaxRate)
	if err != nil {
		return usagef("--max-rate: %v", err)
	}
	if err := checkStaleAfter(opts.StaleAfter); err != nil {
		return err
	}
	incMode, err := backup.ParseIncrementalMode(opts.Incremental)
	if err != nil {
		return usagef("--incremental: %v", err)
	}
	if opts.Parent != "" && incMode == backup.Full {
		return usagef("--parent goes with --incremental")
	}
	st, err := openArchive(ctx, opts.Archive, opts.SSH)
	if err != nil {
		return err
	}
	defer st.Close()
	tp := newTermProgress(g.stderr)
	start := time.Now()
	m, err := backup.Backup(ctx, st, backup.Options{
		ConnString:       opts.DSN,
		Label:            opts.Label,
		FastCheckpoint:   opts.FastCheckpoint,
		Compression:      comp,
		CompressOnServer: opts.CompressOn == "server",
		WALTimeout:       opts.WALTimeout,
		FromStandby:      opts.FromStandby,
		MaxRate:          maxRate,
		StaleAfter:       opts.StaleAfter,
		Incremental:      incMode,
		Parent:           opts.Parent,
		Progress:         tp.progress(),
		Logger:           g.logger,
	})
	tp.end()
	if errors.Is(err, backup.ErrStandby) {
		// Not a failure: the timer that runs backup on every node backs up
		// the primary only.
		g.logger.Info("the server is a standby: no backup taken (pass --from-standby to back up from it)")
		fmt.Fprintln(g.stdout, "no backup: the server is a standby (pass --from-standby to back up from it)")
		return nil
	}
	if err != nil {
		return err
	}
	if opts.JSON {
		return jsonOut(g.stdout, m)
	}
	kind := "full"
	if m.Incremental() {
		kind = "incremental on " + m.Parent
	}
	fmt.Fprintf(g.stdout, "backup %s complete (%s): %s (%s stored), %d files, LSN %s to %s on timeline %d, in %s\n",
		m.ID, kind, humanBytes(m.Size), humanBytes(m.Stored), m.Files, m.StartLSN, m.StopLSN, m.StopTimeline, time.Since(start).Round(time.Millisecond))
	return nil
}

// parseRate reads a rate as pg_basebackup --max-rate takes it: kB per
// second, or with a k or M suffix, from 32k to 1024M. "" is no limit, 0.
func parseRate(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	num, mult := s, int64(1<<10)
	switch {
	case strings.HasSuffix(s, "M"):
		num, mult = strings.TrimSuffix(s, "M"), 1<<20
	case strings.HasSuffix(s, "k"):
		num = strings.TrimSuffix(s, "k")
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > backup.MaxMaxRate/mult || n*mult < backup.MinMaxRate {
		return 0, fmt.Errorf("%q: want kB per second, or with a k or M suffix, from 32k to 1024M", s)
	}
	return n * mult, nil
}

func jsonOut(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// humanBytes formats bytes for people.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// termProgress shows progress as one line of a terminal, rewritten in
// place. It is nil, and reports nothing, when w is not a terminal.
type termProgress struct {
	w     io.Writer
	mu    sync.Mutex
	last  time.Time
	width int
}

func newTermProgress(w io.Writer) *termProgress {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	return &termProgress{w: w}
}

// progress returns p as a backup.Progress: nil, not a nil *termProgress in
// an interface, when there is no terminal, so that callers skip the work.
func (p *termProgress) progress() backup.Progress {
	if p == nil {
		return nil
	}
	return p
}

// Report implements backup.Progress.
func (p *termProgress) Report(s backup.Status) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	var line string
	switch {
	case s.Phase == "wal":
		line = "waiting for the archive to hold " + s.Detail
	case s.Total > 0:
		line = fmt.Sprintf("%s: %3d%%  %s of %s", s.Phase, s.Done*100/s.Total, humanBytes(s.Done), humanBytes(s.Total))
	default:
		line = fmt.Sprintf("%s: %s", s.Phase, humanBytes(s.Done))
	}
	pad := max(0, p.width-len(line))
	p.width = len(line)
	fmt.Fprintf(p.w, "\r%s%*s", line, pad, "")
}

// end clears the progress line.
func (p *termProgress) end() {
	if p == nil || p.width == 0 {
		return
	}
	fmt.Fprintf(p.w, "\r%*s\r", p.width, "")
}
