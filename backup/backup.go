package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/internal/basebackup"
	"github.com/walship/walship/wal"
)

// Defaults of Options.
const (
	DefaultWALTimeout = 5 * time.Minute
	DefaultPoll       = 500 * time.Millisecond
)

// Options configure Backup.
type Options struct {
	// ConnString is a libpq connection string or URL for the server to back
	// up, a primary or a standby; Backup makes it a replication connection.
	ConnString     string
	Label          string // default "walship <id>"
	FastCheckpoint bool   // start with an immediate checkpoint instead of a spread one
	Compression    archive.Compression
	// CompressOnServer has the server compress (zstd level 1 on
	// ServerWorkers threads, PostgreSQL built with zstd) instead of
	// walship: less CPU in all (libzstd is faster than walship's Go zstd)
	// and a twentieth of the bytes on the network, for some CPU on the
	// server. Only with Compression Zstd. A server that refuses to
	// compress gets the backup compressed by walship, with a warning.
	CompressOnServer bool
	// WALTimeout bounds the wait, after the data is stored, until the WAL the
	// backup needs is archived. Zero means DefaultWALTimeout.
	WALTimeout time.Duration
	// Poll is how often the archive is checked for that WAL.
	Poll     time.Duration
	Progress Progress
	Logger   *slog.Logger
	Now      func() time.Time // the clock; tests replace it
	// FromStandby allows a backup of a server in recovery. Without it,
	// Backup of a standby returns ErrStandby and stores nothing, so one
	// backup timer can run on every node of a cluster and back up only
	// the primary.
	FromStandby bool
	// MaxRate limits, in bytes per second, how fast the server sends the
	// backup (BASE_BACKUP's MAX_RATE, whole KiB from 32 KiB to 1 GiB; with
	// CompressOnServer it counts compressed bytes). Zero is no limit.
	MaxRate int64
	// StaleAfter is the age after which cleanup and expire take a backup
	// in progress whose marker was not renewed for dead (see InProgress).
	// Backup refuses to complete once its own marker is that old. Zero
	// means DefaultStaleAfter.
	StaleAfter time.Duration
	// Heartbeat is how often the marker is renewed. Zero means
	// DefaultHeartbeat or a quarter of StaleAfter, whichever is shorter.
	Heartbeat time.Duration
	// Incremental asks for an incremental backup (PostgreSQL 17, with
	// summarize_wal on): only the blocks changed since Parent, or since
	// the newest complete backup when Parent is "".
	Incremental IncrementalMode
	Parent      string
}

// Limits of Options.MaxRate: BASE_BACKUP's, in KiB per second.
const (
	MinMaxRate = 32 << 10
	MaxMaxRate = 1 << 30
)

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o *Options) staleAfter() time.Duration {
	if o.StaleAfter > 0 {
		return o.StaleAfter
	}
	return DefaultStaleAfter
}

func (o *Options) heartbeat() time.Duration {
	if o.Heartbeat > 0 {
		return o.Heartbeat
	}
	return min(DefaultHeartbeat, o.staleAfter()/4)
}

// ErrWALMissing says the WAL a backup needs did not reach the archive in
// time. The backup is not complete.
var ErrWALMissing = errors.New("WAL not archived")

// ErrStandby says the server is a standby and Options.FromStandby was not
// set: nothing was backed up.
var ErrStandby = errors.New("the server is a standby")

// Backup takes a base backup of the server that opts.ConnString names into
// st and returns its backup.json. It returns only once every file of the
// backup is stored and the WAL from its start to its stop position is in the
// archive; then it writes backup.json, and only then is the backup complete.
// On error it removes what it stored, as far as it can.
//
// As soon as the server has told it where the backup starts, Backup stores
// an in-progress marker (InProgress), renewed every opts.Heartbeat until
// the backup ends, so that cleanup and expire keep the WAL from that start
// on even when no backup is complete yet. The marker goes once backup.json
// is written, or with the rest on error.
//
// On a primary the server switches to a new WAL segment when the backup
// ends, and archive_command ships the last one soon. On a standby nothing
// switches: the segment holding the stop position reaches the archive when the
// primary fills or switches it (archive_timeout bounds that), and Backup
// waits for it up to WALTimeout.
func Backup(ctx context.Context, st archive.Storage, opts Options) (Meta, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, err := basebackup.Connect(ctx, opts.ConnString)
	if err != nil {
		return Meta{}, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	si, err := identify(ctx, conn)
	if err != nil {
		return Meta{}, err
	}
	if si.InRecovery && !opts.FromStandby {
		return Meta{}, ErrStandby
	}
	if err := checkIdentity(ctx, st, si); err != nil {
		return Meta{}, err
	}
	if opts.MaxRate != 0 && (opts.MaxRate < MinMaxRate || opts.MaxRate > MaxMaxRate) {
		return Meta{}, fmt.Errorf("max rate %d bytes/s: want %d KiB/s to %d MiB/s", opts.MaxRate, MinMaxRate>>10, MaxMaxRate>>20)
	}
	parent, err := chooseParent(ctx, st, conn, si, opts, log)
	if err != nil {
		return Meta{}, err
	}

	m := Meta{
		Format:      FullMetaFormat,
		FromStandby: si.InRecovery,
		PGVersion:   si.Version,
		SystemID:    si.SystemID,
		SegmentSize: si.SegmentSize,
		Compression: opts.Compression.String(),
		Manifest:    "backup_manifest" + opts.Compression.Suffix(),
	}
	if parent != nil {
		m.Format, m.Parent = MetaFormat, parent.ID
	}
	serverZstd := opts.CompressOnServer && opts.Compression == archive.Zstd
	if serverZstd && !si.Major.ServerCompression() {
		log.Info("the server cannot compress a base backup; walship compresses it instead", "pg_version", si.Version)
		serverZstd = false
	}
	if opts.Compression == archive.Zstd {
		m.CompressedBy = "walship"
		if serverZstd {
			m.CompressedBy = "server"
		}
	}
	m.StartTime = opts.now().UTC().Truncate(time.Second)
	if m.ID, err = claimID(ctx, st, m.StartTime, opts.Label); err != nil {
		return Meta{}, err
	}
	m.Label = opts.Label
	if m.Label == "" {
		m.Label = "walship " + m.ID
	}
	log = log.With("backup", m.ID)
	s := &sink{ctx: ctx, st: st, id: m.ID, comp: opts.Compression, serverZstd: serverZstd, prog: opts.Progress}
	var hb *heartbeat
	ended := false
	// fail removes what this attempt stored, its in-progress markers last
	// (while its files are there its WAL stays kept), then its start marker.
	fail := func() {
		if ended {
			return
		}
		ended = true
		s.abort(errors.New("backup failed"))
		files := s.stored
		if hb != nil {
			hb.stop()
			files = append(files, hb.files()...)
		}
		removeBackup(st, m.ID, files, log)
	}
	defer fail()

	log.Info("base backup starting", "label", m.Label, "from_standby", m.FromStandby, "fast_checkpoint", opts.FastCheckpoint,
		"parent", m.Parent)
	cmd, err := baseBackupCommand(si.Major, m.Label, opts.FastCheckpoint, opts.Progress != nil, serverZstd, opts.MaxRate>>10, parent != nil)
	if err != nil {
		return Meta{}, err
	}
	if parent != nil {
		if err := uploadParentManifest(ctx, st, conn, *parent); err != nil {
			if opts.Incremental == IncrementalAuto {
				log.Info("the server refused the parent's manifest: taking a full backup instead", "parent", parent.ID, "err", err)
				fail()
				opts.Incremental, opts.Parent = Full, ""
				return Backup(ctx, st, opts)
			}
			return Meta{}, incrementalRefused(err, *parent)
		}
	}
	var sr basebackup.Start
	stop, stopTLI, err := basebackup.Run(ctx, conn, si.Major, cmd, func(r basebackup.Start) error {
		sr = r
		for _, t := range r.Tablespaces {
			if t.SizeKB > 0 {
				s.total += t.SizeKB << 10
			}
		}
		log.Info("base backup started", "lsn", r.LSN, "timeline", r.Timeline, "tablespaces", len(r.Tablespaces)-1)
		host, _ := os.Hostname()
		var err error
		hb, err = startHeartbeat(ctx, st, InProgress{ID: m.ID, Label: m.Label, StartLSN: r.LSN, StartTimeline: r.Timeline,
			StartWAL:  wal.SegmentName(r.Timeline, wal.SegmentOf(r.LSN, si.SegmentSize), si.SegmentSize),
			StartTime: m.StartTime, Host: host, PID: os.Getpid()}, opts.heartbeat(), opts.now, log)
		return err
	}, sinkHandler{s})
	if err == nil {
		err = s.finish()
	}
	var pgErr *pgconn.PgError
	if serverZstd && len(s.archives) == 0 && s.cur == nil && errors.As(err, &pgErr) &&
		strings.Contains(strings.ToLower(pgErr.Message), "compress") {
		// A server built without zstd, or without its threads, refuses
		// before sending anything: take the backup again, compressed
		// here, once this attempt is cleaned up.
		log.Warn("the server cannot compress the backup; walship compresses it instead (--compress-on client)", "err", err)
		fail()
		opts.CompressOnServer = false
		return Backup(ctx, st, opts)
	}
	if parent != nil && len(s.archives) == 0 && s.cur == nil && errors.As(err, &pgErr) {
		// The server refuses an incremental backup before it sends
		// anything: no WAL summaries, a parent off its history.
		if opts.Incremental == IncrementalAuto {
			log.Info("the server cannot take an incremental backup: taking a full backup instead", "parent", parent.ID, "err", err)
			fail()
			opts.Incremental, opts.Parent = Full, ""
			return Backup(ctx, st, opts)
		}
		return Meta{}, incrementalRefused(err, *parent)
	}
	if err != nil {
		return Meta{}, err
	}
	m.StopTime = opts.now().UTC()
	m.StartLSN, m.StartTimeline = sr.LSN, sr.Timeline
	m.StopLSN, m.StopTimeline = stop, stopTLI
	// The server sends the tablespaces first; the data directory leads
	// in backup.json.
	for _, a := range s.archives {
		if a.Tablespace == 0 {
			m.Archives = append(m.Archives, a)
		}
	}
	for _, a := range s.archives {
		if a.Tablespace != 0 {
			m.Archives = append(m.Archives, a)
		}
	}
	if len(m.Archives) == 0 || m.Archives[0].Tablespace != 0 {
		return Meta{}, errors.New("BASE_BACKUP: the server sent no base.tar")
	}
	for _, a := range m.Archives {
		m.Size += a.Size
		m.Stored += a.Stored
	}

	man, err := ParseManifest(s.manBuf.Bytes())
	if err != nil {
		return Meta{}, fmt.Errorf("the server's backup manifest: %w", err)
	}
	if err := man.checkOrigin(si.Major, si.SystemID); err != nil {
		return Meta{}, fmt.Errorf("the server's backup manifest: %w", err)
	}
	if n := len(man.WALRanges); n == 0 || man.WALRanges[n-1].End != stop {
		return Meta{}, fmt.Errorf("the backup manifest's WAL range does not end at the stop position %s", stop)
	}
	m.Files = len(man.Files)
	if serverZstd {
		// The server sends its archives compressed: count what they
		// hold from the manifest instead.
		for _, f := range man.Files {
			m.Size += f.Size
		}
	}
	if err := s.putFile(m.Manifest, s.manBuf.Bytes()); err != nil {
		return Meta{}, err
	}

	segs := neededSegments(m)
	m.StartWAL, m.StopWAL = segs[0], segs[len(segs)-1]
	if err := waitWAL(ctx, st, segs, m.FromStandby, opts, log); err != nil {
		return Meta{}, err
	}
	if err := checkIdentity(ctx, st, si); err != nil {
		return Meta{}, err
	}
	if err := hb.check(opts.staleAfter()); err != nil {
		return Meta{}, err
	}
	if err := writeMeta(ctx, st, m); err != nil {
		return Meta{}, fmt.Errorf("write backup.json: %w", err)
	}
	ended = true
	// Complete: backup.json protects the WAL from now on.
	rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hb.remove(rctx); err != nil {
		log.Warn("cannot remove the in-progress marker of the complete backup; it is ignored, and goes when the backup expires", "err", err)
	}
	log.Info("base backup complete", "parent", m.Parent, "start_lsn", m.StartLSN, "stop_lsn", m.StopLSN, "size", m.Size, "stored", m.Stored)
	return m, nil
}

// checkIdentity refuses to back up a server of another cluster than the
// archive's. An archive without an identity yet gets one from the first
// segment pushed (push reads it from the page header, and runs as the user
// that must own the file), so Backup checks again once the WAL is there.
func checkIdentity(ctx context.Context, st archive.Storage, si serverInfo) error {
	id, err := archive.ReadIdentity(ctx, st)
	if errors.Is(err, archive.ErrNoIdentity) {
		return nil
	}
	if err != nil {
		return err
	}
	if id.SystemID != si.SystemID || id.SegmentSize != si.SegmentSize {
		return fmt.Errorf("%w: the server has system identifier %d and %d-byte segments, the archive %s holds %d and %d: use one archive per cluster",
			archive.ErrIdentityMismatch, si.SystemID, si.SegmentSize, st, id.SystemID, id.SegmentSize)
	}
	return nil
}

// claimID writes the start marker of a new backup and returns its id: the
// start time, or a later second when another backup took that one. The
// marker stays when the backup completes: creating it is what reserves the
// id, so two backups never share one.
func claimID(ctx context.Context, st archive.Storage, start time.Time, label string) (string, error) {
	host, _ := os.Hostname()
	for i := 0; ; i++ {
		id := start.Add(time.Duration(i) * time.Second).Format(idLayout)
		b, _ := json.Marshal(map[string]any{"id": id, "label": label, "host": host, "pid": os.Getpid(), "start_time": start})
		err := st.Put(ctx, startedPath(id), bytes.NewReader(append(b, '\n')))
		if err == nil {
			return id, nil
		}
		if !archive.IsExist(err) || i >= 60 {
			return "", fmt.Errorf("start backup %s: %w", id, err)
		}
	}
}

// removeBackup removes what a failed backup stored (files, in the order
// given), then its start marker: a backup whose files could not all be
// removed stays listed as incomplete.
func removeBackup(st archive.Storage, id string, files []string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, f := range files {
		if err := st.Remove(ctx, Path(id, f)); err != nil && !archive.IsNotExist(err) {
			log.Warn("cannot remove a file of the failed backup; walship expire removes it later", "file", f, "err", err)
			return
		}
	}
	_ = st.Remove(ctx, archive.BackupsDir+"/"+id) // the empty directory, where the backend can
	if err := st.Remove(ctx, startedPath(id)); err != nil && !archive.IsNotExist(err) {
		log.Warn("cannot remove the start marker of the failed backup", "err", err)
	}
}

// neededSegments names the segments from the one holding the start
// position to the one holding the last byte before the stop position.
func neededSegments(m Meta) []string {
	first := wal.SegmentOf(m.StartLSN, m.SegmentSize)
	last := wal.SegmentOf(m.StopLSN-1, m.SegmentSize)
	if m.StartTimeline != m.StopTimeline || last < first {
		// A standby that changed timeline during the backup: the start
		// and stop segments, the ones in between on either timeline.
		return []string{wal.SegmentName(m.StartTimeline, first, m.SegmentSize), wal.SegmentName(m.StopTimeline, last, m.SegmentSize)}
	}
	var names []string
	for s := first; s <= last; s++ {
		names = append(names, wal.SegmentName(m.StopTimeline, s, m.SegmentSize))
	}
	return names
}

// walWaitReport is how often waitWAL says again that it is still waiting.
const walWaitReport = 30 * time.Second

// waitWAL waits until every segment of names is archived. fromStandby says
// the backup came from a standby, whose last segment only the primary can
// archive: on an idle primary that happens at its next archive_timeout, so
// the wait says so, and names the fix, from the start.
func waitWAL(ctx context.Context, st archive.Storage, names []string, fromStandby bool, opts Options, log *slog.Logger) error {
	timeout, poll := opts.WALTimeout, opts.Poll
	if timeout <= 0 {
		timeout = DefaultWALTimeout
	}
	if poll <= 0 {
		poll = DefaultPoll
	}
	start := opts.now()
	deadline := start.Add(timeout)
	var reported time.Time
	// Where the backend can tell, wake up as soon as a file arrives; poll
	// as well, since a watch is only a hint.
	var arrived <-chan struct{}
	if w, ok := st.(archive.Watcher); ok {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if ch, err := w.Watch(wctx, archive.WALDir); err == nil {
			arrived = ch
		}
	}
	for i := 0; i < len(names); {
		_, _, err := archive.StatWAL(ctx, st, names[i])
		if err == nil {
			i++
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !archive.IsNotExist(err) {
			log.Warn("cannot read the archive, retrying", "err", err)
		}
		now := opts.now()
		if now.After(deadline) {
			return fmt.Errorf("%w: segment %s, which the backup needs, is not in the archive after %v: %s",
				ErrWALMissing, names[i], timeout, walFix(fromStandby))
		}
		if reported.IsZero() || now.Sub(reported) >= walWaitReport {
			if fromStandby {
				log.Info("waiting for the primary to archive the segment the backup from a standby ends in; "+
					"an idle primary archives it only at its next archive_timeout",
					"segment", names[i], "waited", now.Sub(start).Round(time.Second), "timeout", timeout, "fix", walFix(true))
			} else {
				log.Info("waiting for the archive to hold the WAL the backup needs",
					"segment", names[i], "waited", now.Sub(start).Round(time.Second), "timeout", timeout)
			}
			reported = now
		}
		report(opts.Progress, Status{Phase: "wal", Detail: names[i]})
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-arrived:
			if !ok {
				arrived = nil // the watch ended: poll only
			}
		case <-time.After(poll):
		}
	}
	return nil
}

// walFix says what makes the WAL a backup waits for reach the archive.
func walFix(fromStandby bool) string {
	if fromStandby {
		return "on the primary, set archive_timeout (60s, say) so that an idle primary archives its " +
			"current segment, or run SELECT pg_switch_wal() there; check that its archive_command " +
			"(walship push) works (pg_stat_archiver); or raise --wal-timeout"
	}
	return "check that archive_command (walship push) works (pg_stat_archiver), or raise --wal-timeout"
}

// archiveName matches what the server calls its tar archives. It is
// compiled on first use, as markerName: every walship process links this
// package, and most take no backup.
var archiveName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(base|[1-9][0-9]*)\.tar$`) })

// sink stores the archives of a running backup, each as it streams in, and
// keeps the manifest in memory.
type sink struct {
	ctx  context.Context
	st   archive.Storage
	id   string
	comp archive.Compression
	// serverZstd: the server compresses, and its archives come as
	// base.tar.zst, stored as they come.
	serverZstd bool
	prog       Progress
	total      int64

	cur        *upload
	inManifest bool
	manBuf     bytes.Buffer
	archives   []ArchiveFile
	stored     []string // files this backup stored, to remove on failure
	done       int64
	reported   time.Time
}

// sinkHandler is the sink as a basebackup.Handler.
type sinkHandler struct{ s *sink }

func (h sinkHandler) Archive(name, location string) error { return h.s.archive(name, location) }
func (h sinkHandler) Manifest() error                     { return h.s.manifest() }
func (h sinkHandler) Data(p []byte) error                 { return h.s.data(p) }
func (h sinkHandler) Progress(done int64)                 { h.s.progress(done) }

// upload is one file being stored from a pipe.
type upload struct {
	pw     *io.PipeWriter
	errc   chan error
	file   ArchiveFile
	stored *archive.CountingReader
}

func (s *sink) archive(name, location string) error {
	if err := s.closeCurrent(); err != nil {
		return err
	}
	tarName := name
	if s.serverZstd {
		tarName = strings.TrimSuffix(name, ".zst")
		if tarName == name {
			return fmt.Errorf("BASE_BACKUP: archive %q is not zstd-compressed as asked", name)
		}
	}
	if s.inManifest || !archiveName().MatchString(tarName) {
		return fmt.Errorf("BASE_BACKUP: unexpected archive %q", name)
	}
	f := ArchiveFile{Name: tarName + s.comp.Suffix(), Location: location}
	if tarName != "base.tar" {
		oid, _ := strconv.ParseUint(strings.TrimSuffix(tarName, ".tar"), 10, 32)
		f.Tablespace = uint32(oid)
	}
	s.cur = s.start(f)
	return nil
}

func (s *sink) manifest() error {
	if err := s.closeCurrent(); err != nil {
		return err
	}
	s.inManifest = true
	return nil
}

func (s *sink) data(p []byte) error {
	if s.inManifest {
		if s.manBuf.Len()+len(p) > 1<<30 {
			return errors.New("BASE_BACKUP: manifest larger than 1 GiB")
		}
		s.manBuf.Write(p)
		return nil
	}
	if s.cur == nil {
		return errors.New("BASE_BACKUP: data before the first archive")
	}
	if _, err := s.cur.pw.Write(p); err != nil {
		return s.cur.wait(err)
	}
	s.cur.file.Size += int64(len(p))
	return nil
}

func (s *sink) progress(done int64) {
	s.done = done
	if time.Since(s.reported) >= 200*time.Millisecond {
		s.reported = time.Now()
		report(s.prog, Status{Phase: "backup", Done: done, Total: max(s.total, done)})
	}
}

// start begins storing f.
func (s *sink) start(f ArchiveFile) *upload {
	pr, pw := io.Pipe()
	u := &upload{pw: pw, errc: make(chan error, 1), file: f}
	var r io.ReadCloser = pr
	if s.comp == archive.Zstd && !s.serverZstd {
		r = archive.Compress(pr)
	}
	u.stored = &archive.CountingReader{R: r}
	go func() {
		err := s.st.Put(s.ctx, Path(s.id, f.Name), u.stored)
		r.Close()
		// Unblock the writer when Put gave up early.
		pr.CloseWithError(cmpErr(err, io.ErrClosedPipe))
		u.errc <- err
	}()
	return u
}

// closeCurrent ends the current archive and waits until it is stored.
func (s *sink) closeCurrent() error {
	if s.cur == nil {
		return nil
	}
	u := s.cur
	s.cur = nil
	// PostgreSQL 15 and later end each tar archive with its two zero
	// blocks, 13 and 14 do not (pg_basebackup adds them); two more,
	// where walship compresses, are harmless.
	if !s.serverZstd {
		if _, err := u.pw.Write(make([]byte, 1024)); err != nil {
			return u.wait(err)
		}
	}
	u.pw.Close()
	if err := <-u.errc; err != nil {
		return fmt.Errorf("store %s: %w", u.file.Name, err)
	}
	u.file.Stored = u.stored.N
	s.archives = append(s.archives, u.file)
	s.stored = append(s.stored, u.file.Name)
	return nil
}

// wait returns the error that stopped an upload.
func (u *upload) wait(werr error) error {
	u.pw.CloseWithError(werr)
	if err := <-u.errc; err != nil {
		return fmt.Errorf("store %s: %w", u.file.Name, err)
	}
	return fmt.Errorf("store %s: %w", u.file.Name, werr)
}

// finish stores the last archive, after the COPY stream ended.
func (s *sink) finish() error {
	if s.inManifest {
		return nil
	}
	if err := s.closeCurrent(); err != nil {
		return err
	}
	return errors.New("BASE_BACKUP: the server sent no manifest")
}

// abort stops an upload in progress after an error.
func (s *sink) abort(err error) {
	if s.cur != nil {
		s.cur.pw.CloseWithError(err)
		<-s.cur.errc
		s.cur = nil
	}
}

// putFile stores a small file of the backup, compressed as the rest.
func (s *sink) putFile(name string, b []byte) error {
	var r io.Reader = bytes.NewReader(b)
	if s.comp == archive.Zstd {
		zr := archive.Compress(r)
		defer zr.Close()
		r = zr
	}
	if err := s.st.Put(s.ctx, Path(s.id, name), r); err != nil {
		return fmt.Errorf("store %s: %w", name, err)
	}
	s.stored = append(s.stored, name)
	return nil
}

func cmpErr(err, fallback error) error {
	if err != nil {
		return err
	}
	return fallback
}
