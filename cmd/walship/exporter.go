package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/walship/walship/internal/cli"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/backup"
	"github.com/walship/walship/wal"
)

// exporterOptions are the settings of walship exporter.
type exporterOptions struct {
	Listen string
	// Repo is a repository of cluster archives, one per subdirectory.
	Repo string
	// Archive is one cluster's archive, named Name (default: the last
	// element of its path), with DSN its server's connection string.
	Archive, Name, DSN string
	// Clusters are NAME=URL archives, DSNs NAME=CONNSTR connection strings.
	Clusters, DSNs []string
	Interval       time.Duration
	Timeout        time.Duration
	SSH            sshOptions
}

// DefaultExporterListen is pgbackrest_exporter's port, which operators
// already open for backup metrics.
const DefaultExporterListen = ":9854"

// exporterConcurrency bounds the clusters refreshed at once.
const exporterConcurrency = 4

func exporterCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name: "exporter",
		UsageText: "walship exporter [--listen :9854] --repo ROOT [--cluster-dsn NAME=CONNSTR]...\n" +
			"walship exporter --archive URL [--name NAME] [--dsn CONNSTR]\n" +
			"walship exporter --cluster NAME=URL [--cluster NAME=URL]... [--cluster-dsn NAME=CONNSTR]...",
		Description: `exporter is a daemon that serves, at http://--listen/metrics, the health of
one or more cluster archives, each metric labelled cluster="NAME": their
backups, their newest WAL, gaps and unusable backups, and with a connection
string the server's archiver and how far the archive is behind it (archive
lag, in bytes and seconds: the recovery point objective).

The clusters are:
   --repo ROOT        every direct subdirectory of ROOT that holds walship.json,
                      named by the subdirectory (looked for again at each refresh)
   --archive URL      one archive, named --name or the last element of its path
   --cluster NAME=URL one archive each, repeatable
--cluster-dsn NAME=CONNSTR (repeatable) connects to a cluster's server, and
--dsn CONNSTR to that of --archive; everything after the first "=" is the
connection string, in either form: main=host=/run/postgresql user=walship,
or main=postgres://walship@db1/postgres. The role needs pg_monitor (for
pg_current_wal_flush_lsn and pg_stat_archiver).

What a scrape costs: nothing but the encoding of the metrics. The exporter
refreshes every --interval in the background, at most 4 clusters at a time,
and each scrape serves the last refresh. A refresh of one cluster lists its
wal/ and backups/ directories in full (a removed segment shows in nothing
else), lists the tail of the segment after the newest, and reads only the
backup.json and .history files it has not seen before; it never reads a
segment. On a local archive of 10,000 segments and 20 backups that is about
70 ms (80 ms of CPU), mostly the file system's stat of each name, and a
scrape 0.2 ms (see BENCHMARKS.md); on S3 it is one LIST request per 1,000
names. With a connection string, one query.

An archive that cannot be read is walship_up{cluster}=0, one more
walship_scrape_errors_total{cluster} and a warning in the log, never an
exit; the other metrics of that cluster keep the values of its last good
refresh. A server that cannot be reached is walship_pg_up{cluster}=0.

Metrics (besides go_* and process_*):
` + exporterMetricsHelp() + `
Exit codes: 0 stopped by SIGTERM or SIGINT; 2 usage error, or --listen
cannot be listened on.`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "listen", Value: DefaultExporterListen, EnvVars: []string{"WALSHIP_LISTEN"},
				Usage: "serve the metrics at http://`ADDR`/metrics"},
			&cli.StringFlag{Name: "repo", EnvVars: []string{"WALSHIP_REPO"},
				Usage: "a repository `ROOT` (a directory, sftp:// or s3://) whose subdirectories are cluster archives"},
			archiveFlag(),
			&cli.StringFlag{Name: "name", EnvVars: []string{"WALSHIP_CLUSTER_NAME"},
				Usage: "the cluster label of --archive (default: the last element of its path)"},
			&cli.StringFlag{Name: "dsn", EnvVars: []string{"WALSHIP_DSN"},
				Usage: "connection string of the server that archives into --archive"},
			&cli.StringSliceFlag{Name: "cluster",
				Usage: "a cluster archive, `NAME=URL`; repeatable"},
			&cli.StringSliceFlag{Name: "cluster-dsn",
				Usage: "the connection string of a cluster's server, `NAME=CONNSTR`; repeatable"},
			&cli.DurationFlag{Name: "interval", Value: time.Minute, EnvVars: []string{"WALSHIP_EXPORTER_INTERVAL"},
				Usage: "how often to refresh each cluster's metrics, at least 1s"},
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, EnvVars: []string{"WALSHIP_EXPORTER_TIMEOUT"},
				Usage: "give up one cluster's refresh after this long"},
		}, sshFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("exporter takes no arguments; got %d", c.NArg())
			}
			return runExporter(c.Context, g.logger, exporterOptions{
				Listen:   c.String("listen"),
				Repo:     c.String("repo"),
				Archive:  c.String("archive"),
				Name:     c.String("name"),
				DSN:      c.String("dsn"),
				Clusters: c.StringSlice("cluster"),
				DSNs:     c.StringSlice("cluster-dsn"),
				Interval: c.Duration("interval"),
				Timeout:  c.Duration("timeout"),
				SSH:      sshOptionsFrom(c, g.logger),
			})
		},
	}
}

func runExporter(ctx context.Context, logger *slog.Logger, opts exporterOptions) error {
	e, err := newExporter(logger, opts)
	if err != nil {
		return err
	}
	defer e.close()
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return usagef("--listen %s: %v", opts.Listen, err)
	}
	h := promHandler(func(s *promSet) {
		e.collect(s)
		collectProcess(s)
	})
	addr, done, err := serveListener(ctx, logger, ln, h)
	if err != nil {
		return err
	}
	logger.Info("serving metrics", "url", "http://"+addr.String()+"/metrics", "interval", opts.Interval)
	e.run(ctx)
	<-done
	return ctx.Err()
}

// exporter refreshes the clusters' health in the background, and collect
// serves the last refresh.
type exporter struct {
	logger *slog.Logger
	opts   exporterOptions
	descs  map[string]exporterMetric
	root   archive.Storage // the repository; nil without --repo
	static []*exportedCluster
	dsns   map[string]string

	mu         sync.Mutex
	clusters   []*exportedCluster // sorted by name; what Collect shows
	repoListed bool
	repoUp     bool
}

// exportedCluster is one cluster: its archive, and what the last refresh
// found (guarded by exporter.mu).
type exportedCluster struct {
	name    string
	st      archive.Storage
	own     bool // st is the cluster's own, to close
	dsn     string
	tracker backup.Tracker // used by one refresh at a time
	conn    *pgx.Conn      // likewise

	up      bool
	errors  float64
	lastOK  time.Time
	took    time.Duration
	health  *backup.Health
	pgUp    bool
	pg      *pgArchiver
	behind  []flushSample // flushes the archive lacked, oldest first
	lagB    float64
	lagS    float64
	lagKnow bool
}

// pgArchiver is what one query of a server found.
type pgArchiver struct {
	inRecovery         bool
	flush              wal.LSN // zero on a standby
	archived, failed   int64
	lastArchived, lost *float64 // seconds since the epoch
}

// flushSample is the server's flush position at a refresh.
type flushSample struct {
	at    time.Time
	flush wal.LSN
}

// maxFlushSamples bounds the samples of a cluster whose archive stays
// behind: at the default interval, a week.
const maxFlushSamples = 10_000

func newExporter(logger *slog.Logger, opts exporterOptions) (*exporter, error) {
	if opts.Interval < time.Second {
		return nil, usagef("--interval %v: use at least 1s", opts.Interval)
	}
	if opts.Timeout <= 0 {
		return nil, usagef("--timeout %v: use a positive duration", opts.Timeout)
	}
	if opts.Repo == "" && opts.Archive == "" && len(opts.Clusters) == 0 {
		return nil, usagef("no clusters given: pass --repo ROOT, --archive URL or --cluster NAME=URL")
	}
	if opts.Archive == "" && (opts.Name != "" || opts.DSN != "") {
		return nil, usagef("--name and --dsn describe --archive, which is not given; use --cluster NAME=URL and --cluster-dsn NAME=CONNSTR")
	}
	e := &exporter{logger: logger, opts: opts, descs: exporterDescs(), dsns: map[string]string{}}
	lazy := func(raw string, open func(context.Context, string, sshOptions) (archive.Storage, error)) (archive.Storage, error) {
		u, err := archive.ParseURL(raw)
		if err != nil {
			return nil, usageError{err}
		}
		// A daemon outlives an archive that is away for a while: opening
		// it is retried at each refresh, like any other archive error.
		return archive.Lazy(u.String(), func(ctx context.Context) (archive.Storage, error) {
			return open(ctx, raw, opts.SSH)
		}), nil
	}
	add := func(name, raw, dsn string) error {
		if err := clusterName(name); err != nil {
			return err
		}
		for _, c := range e.static {
			if c.name == name {
				return usagef("cluster %s is given twice", name)
			}
		}
		st, err := lazy(raw, func(ctx context.Context, raw string, o sshOptions) (archive.Storage, error) {
			return openArchive(ctx, raw, o)
		})
		if err != nil {
			return err
		}
		e.static = append(e.static, &exportedCluster{name: name, st: st, own: true, dsn: dsn, tracker: backup.Tracker{Storage: st}})
		return nil
	}
	if opts.Archive != "" {
		name := opts.Name
		if name == "" {
			u, err := archive.ParseURL(opts.Archive)
			if err != nil {
				return nil, usageError{err}
			}
			name = path.Base(u.Path)
			if u.Path == "" || name == "." || name == "/" {
				name = u.Host
			}
		}
		if err := add(name, opts.Archive, opts.DSN); err != nil {
			return nil, err
		}
	}
	for _, kv := range opts.Clusters {
		name, raw, ok := strings.Cut(kv, "=")
		if !ok || raw == "" {
			return nil, usagef("--cluster %q: write NAME=URL", kv)
		}
		if err := add(name, raw, ""); err != nil {
			return nil, err
		}
	}
	for _, kv := range opts.DSNs {
		name, dsn, ok := strings.Cut(kv, "=")
		if !ok || dsn == "" {
			return nil, usagef("--cluster-dsn %q: write NAME=CONNSTR", kv)
		}
		if err := clusterName(name); err != nil {
			return nil, err
		}
		if _, err := pgx.ParseConfig(dsn); err != nil {
			return nil, usagef("--cluster-dsn %s: %v", name, err)
		}
		e.dsns[name] = dsn
	}
	for _, c := range e.static {
		if dsn, ok := e.dsns[c.name]; ok {
			if c.dsn != "" {
				return nil, usagef("cluster %s has --dsn and --cluster-dsn: give one", c.name)
			}
			c.dsn = dsn
		}
	}
	if opts.Repo != "" {
		st, err := lazy(opts.Repo, openRepo)
		if err != nil {
			return nil, err
		}
		e.root = st
	} else {
		for name := range e.dsns {
			if !e.isStatic(name) {
				return nil, usagef("--cluster-dsn %s: no cluster of that name (give --repo, --archive or --cluster)", name)
			}
		}
	}
	e.clusters = append(e.clusters, e.static...)
	sortClusters(e.clusters)
	return e, nil
}

// clusterName checks a cluster label: a single name, as a repository's
// subdirectory is.
func clusterName(name string) error {
	if name == "" || strings.Contains(name, "/") || archive.ValidName(name) != nil {
		return usagef("cluster name %q: use a plain name such as main", name)
	}
	return nil
}

func (e *exporter) isStatic(name string) bool {
	for _, c := range e.static {
		if c.name == name {
			return true
		}
	}
	return false
}

func sortClusters(cs []*exportedCluster) {
	slices.SortFunc(cs, func(a, b *exportedCluster) int { return strings.Compare(a.name, b.name) })
}

func (e *exporter) close() {
	for _, c := range e.clusters {
		if c.conn != nil {
			c.conn.Close(context.Background())
		}
		if c.own {
			c.st.Close()
		}
	}
	if e.root != nil {
		e.root.Close()
	}
}

// run refreshes every cluster now and then every --interval, until ctx is
// done.
func (e *exporter) run(ctx context.Context) {
	t := time.NewTicker(e.opts.Interval)
	defer t.Stop()
	for {
		e.refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh finds the repository's clusters and refreshes each.
func (e *exporter) refresh(ctx context.Context) {
	if e.root != nil {
		e.discover(ctx)
	}
	e.mu.Lock()
	cs := append([]*exportedCluster(nil), e.clusters...)
	e.mu.Unlock()
	sem := make(chan struct{}, exporterConcurrency)
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			e.refreshCluster(ctx, c)
		}()
	}
	wg.Wait()
}

// discover lists the repository's clusters: new ones are added, those gone
// are dropped, and on failure the ones known are kept.
func (e *exporter) discover(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
	names, err := archive.ListClusters(lctx, e.root)
	cancel()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.repoListed = true
	if err != nil {
		if ctx.Err() == nil {
			e.logger.Warn("cannot list the repository's clusters", "repo", e.root.String(), "err", err)
		}
		e.repoUp = false
		return
	}
	e.repoUp = true
	known := map[string]*exportedCluster{}
	for _, c := range e.clusters {
		known[c.name] = c
	}
	next := append([]*exportedCluster(nil), e.static...)
	for _, name := range names {
		if e.isStatic(name) {
			continue // --archive or --cluster of that name wins
		}
		if c, ok := known[name]; ok {
			next = append(next, c)
			continue
		}
		st, err := archive.Sub(e.root, name)
		if err == nil {
			st, err = withEncryption(st, e.opts.SSH)
		}
		if err != nil {
			continue
		}
		e.logger.Info("cluster found in the repository", "cluster", name, "archive", st.String())
		next = append(next, &exportedCluster{name: name, st: st, dsn: e.dsns[name], tracker: backup.Tracker{Storage: st}})
	}
	for _, c := range e.clusters {
		if !c.own && !containsCluster(next, c) {
			e.logger.Info("cluster gone from the repository", "cluster", c.name)
			if c.conn != nil {
				c.conn.Close(context.Background())
			}
		}
	}
	sortClusters(next)
	e.clusters = next
}

func containsCluster(cs []*exportedCluster, c *exportedCluster) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// refreshCluster reads c's archive and queries its server, then publishes
// what it found.
func (e *exporter) refreshCluster(ctx context.Context, c *exportedCluster) {
	rctx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
	defer cancel()
	start := time.Now()
	h, err := c.tracker.Refresh(rctx)
	took := time.Since(start)
	var pg *pgArchiver
	var pgErr error
	if c.dsn != "" {
		pg, pgErr = c.queryServer(rctx)
	}
	if ctx.Err() != nil {
		return // shutting down: not the archive's fault
	}
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	c.took = took
	if err != nil {
		c.up = false
		c.errors++
		e.logger.Warn("cannot read the cluster's archive", "cluster", c.name, "archive", c.st.String(), "err", err)
	} else {
		c.up, c.health, c.lastOK = true, h, now
	}
	if c.dsn == "" {
		return
	}
	if pgErr != nil {
		c.pgUp = false
		e.logger.Warn("cannot query the cluster's server", "cluster", c.name, "err", pgErr)
		return
	}
	c.pgUp, c.pg = true, pg
	c.updateLag(now)
}

// updateLag works out the archive lag from the server's flush position and
// the end of the archived WAL. The seconds count from the first refresh
// whose flush position the archive still lacks.
func (c *exportedCluster) updateLag(now time.Time) {
	if c.pg.inRecovery || c.health == nil {
		c.lagKnow, c.behind = false, nil
		return
	}
	var archived wal.LSN
	if c.health.WAL != nil {
		archived = c.health.WAL.Through()
	}
	flush := c.pg.flush
	if flush > archived {
		c.behind = append(c.behind, flushSample{at: now, flush: flush})
	}
	i := 0
	for i < len(c.behind) && c.behind[i].flush <= archived {
		i++
	}
	c.behind = c.behind[i:]
	if len(c.behind) > maxFlushSamples {
		c.behind = append(c.behind[:1], c.behind[2:]...) // the oldest decides the lag
	}
	c.lagKnow = true
	c.lagB, c.lagS = 0, 0
	if flush > archived {
		c.lagB = float64(flush - archived)
	}
	if len(c.behind) > 0 {
		c.lagS = now.Sub(c.behind[0].at).Seconds()
	}
}

// queryServer reads the server's archiver statistics and flush position,
// connecting when it has no connection.
func (c *exportedCluster) queryServer(ctx context.Context) (*pgArchiver, error) {
	if c.conn == nil || c.conn.IsClosed() {
		conn, err := pgx.Connect(ctx, c.dsn)
		if err != nil {
			return nil, err
		}
		c.conn = conn
	}
	var a pgArchiver
	var flush *string
	err := c.conn.QueryRow(ctx, `SELECT pg_is_in_recovery(),
		CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_flush_lsn()::text END,
		archived_count, failed_count,
		extract(epoch FROM last_archived_time)::float8, extract(epoch FROM last_failed_time)::float8
		FROM pg_stat_archiver`).Scan(&a.inRecovery, &flush, &a.archived, &a.failed, &a.lastArchived, &a.lost)
	if err != nil {
		c.conn.Close(context.Background())
		c.conn = nil
		return nil, err
	}
	if flush != nil {
		if a.flush, err = wal.ParseLSN(*flush); err != nil {
			return nil, fmt.Errorf("pg_current_wal_flush_lsn: %w", err)
		}
	}
	return &a, nil
}

// collect adds the metrics of the last refresh of each cluster to s.
func (e *exporter) collect(s *promSet) {
	e.mu.Lock()
	defer e.mu.Unlock()
	emit := func(name string, v float64, values ...string) {
		m, ok := e.descs[name]
		names := m.labelNames()
		if !ok || len(names) != len(values) {
			panic(fmt.Sprintf("walship: exporter metric %s with %d label values", name, len(values)))
		}
		labels := make([]string, 0, 2*len(values))
		for i, v := range values {
			labels = append(labels, names[i], v)
		}
		s.add(name, m.help, m.kind(), v, labels...)
	}
	if e.root != nil && e.repoListed {
		emit("walship_repo_up", bool01(e.repoUp))
		emit("walship_repo_clusters", float64(len(e.clusters)-len(e.static)))
	}
	for _, c := range e.clusters {
		c.collect(emit)
	}
}

func (c *exportedCluster) collect(emit func(name string, v float64, labels ...string)) {
	n := c.name
	emit("walship_up", bool01(c.up), n)
	emit("walship_scrape_errors_total", c.errors, n)
	if !c.lastOK.IsZero() {
		emit("walship_last_refresh_timestamp_seconds", unixSeconds(c.lastOK), n)
	}
	emit("walship_refresh_duration_seconds", c.took.Seconds(), n)
	if h := c.health; h != nil {
		id := h.Identity
		emit("walship_archive_info", 1, n, strconv.FormatUint(id.SystemID, 10), strconv.Itoa(id.PGVersion),
			strconv.FormatInt(id.SegmentSize, 10))
		emit("walship_backups", float64(h.Backups), n)
		emit("walship_backups_incomplete", float64(h.Incomplete), n)
		emit("walship_backups_unusable", float64(len(h.Unusable)), n)
		for _, b := range []struct {
			which string
			m     *backup.Meta
		}{{"newest", h.Newest}, {"oldest", h.Oldest}} {
			if b.m == nil {
				continue
			}
			from := "primary"
			if b.m.FromStandby {
				from = "standby"
			}
			emit("walship_backup_info", 1, n, b.which, b.m.ID, "full", from, strconv.Itoa(int(b.m.StopTimeline)))
			emit("walship_backup_completion_timestamp_seconds", unixSeconds(b.m.StopTime), n, b.which)
			emit("walship_backup_duration_seconds", b.m.StopTime.Sub(b.m.StartTime).Seconds(), n, b.which)
			emit("walship_backup_size_bytes", float64(b.m.Size), n, b.which)
			emit("walship_backup_stored_bytes", float64(b.m.Stored), n, b.which)
		}
		if w := h.WAL; w != nil {
			emit("walship_wal_newest_segment_info", 1, n, w.Segment, strconv.Itoa(int(w.Timeline)))
			emit("walship_wal_archived_lsn", float64(w.Through()), n)
			emit("walship_wal_newest_archived_timestamp_seconds", unixSeconds(w.Archived), n)
		}
		for _, t := range h.Timelines {
			tl := strconv.Itoa(int(t.Timeline))
			emit("walship_wal_segments", float64(t.Segments), n, tl)
			emit("walship_wal_stored_bytes", float64(t.Stored), n, tl)
			emit("walship_wal_gaps", float64(t.Gaps), n, tl)
			emit("walship_wal_missing_segments", float64(t.Missing), n, tl)
		}
		emit("walship_wal_diverged_segments", float64(h.Diverged), n)
	}
	if c.dsn == "" {
		return
	}
	emit("walship_pg_up", bool01(c.pgUp), n)
	if p := c.pg; p != nil {
		emit("walship_pg_in_recovery", bool01(p.inRecovery), n)
		emit("walship_pg_archiver_archived_total", float64(p.archived), n)
		emit("walship_pg_archiver_failed_total", float64(p.failed), n)
		if p.lastArchived != nil {
			emit("walship_pg_archiver_last_archived_timestamp_seconds", *p.lastArchived, n)
		}
		if p.lost != nil {
			emit("walship_pg_archiver_last_failure_timestamp_seconds", *p.lost, n)
		}
		if !p.inRecovery {
			emit("walship_pg_flush_lsn", float64(p.flush), n)
		}
	}
	if c.lagKnow {
		emit("walship_archive_lag_bytes", c.lagB, n)
		emit("walship_archive_lag_seconds", c.lagS, n)
	}
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
