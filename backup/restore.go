package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/internal/pgver"
)

// RestoreOptions configure Restore.
type RestoreOptions struct {
	PGData   string // the data directory to create
	BackupID string // "" or "latest": let Choose pick by Target
	Target   Target
	// RestoreCommand is the restore_command recovery runs (walship fetch or
	// walship wait); RecoveryEndCommand the recovery_end_command.
	RestoreCommand     string
	RecoveryEndCommand string
	// Standby says RestoreCommand waits for WAL (walship wait). Restore
	// then turns recovery_prefetch off: the server's read-ahead runs
	// restore_command for the next segment while records it has decoded
	// wait to be replayed, and a waiting command holds them back (up to
	// wal_decode_buffer_size of archived WAL, and the consistent point).
	Standby bool
	// Signal is the signal file the restore leaves: SignalRecovery (the
	// zero value) for point-in-time recovery and pg_standby-mode standbys,
	// SignalStandby for a standby.signal standby, SignalNone for a tool that
	// writes its own (Patroni's replica method). Whichever it is, the other
	// signal file goes: a recovery.signal left beside standby.signal
	// outlives a promotion (the server removes only standby.signal) and
	// sends the next plain restart into archive recovery, on a new timeline.
	Signal Signal
	// TablespaceMap moves tablespaces: old location → new location.
	TablespaceMap map[string]string
	// Force restores into non-empty directories after emptying them.
	Force    bool
	Progress Progress
	Logger   *slog.Logger
}

// Signal names the signal file a restore leaves in the data directory.
type Signal string

// The signal files Restore can leave.
const (
	SignalRecovery Signal = "recovery" // recovery.signal: recover, then promote (or wait, with walship wait)
	SignalStandby  Signal = "standby"  // standby.signal: a standby, promoted by pg_promote()
	SignalNone     Signal = "none"     // neither: the caller (Patroni) writes its own
)

// ParseSignal parses a --signal value; "" is SignalRecovery.
func ParseSignal(s string) (Signal, error) {
	switch Signal(s) {
	case "", SignalRecovery:
		return SignalRecovery, nil
	case SignalStandby, SignalNone:
		return Signal(s), nil
	}
	return "", fmt.Errorf("signal %q: use recovery, standby or none", s)
}

// ErrNotEmpty says a directory to restore into holds files.
var ErrNotEmpty = errors.New("directory is not empty")

// Restore rebuilds a data directory from a backup in st: it extracts every
// tar stream (the tablespaces to their locations), checks every file
// against the backup manifest (size and CRC32C) and that none is missing,
// and writes the recovery settings into postgresql.auto.conf and a
// recovery.signal file. The server then fetches the WAL from the archive
// when it starts. It returns the backup it restored.
//
// A corrupt backup returns an error matching ErrCorrupt, and leaves the
// directories it wrote for the operator to inspect or remove.
func Restore(ctx context.Context, st archive.Storage, opts RestoreOptions) (Meta, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l, err := List(ctx, st)
	if err != nil {
		return Meta{}, err
	}
	tli, history, err := recoveryTimeline(ctx, st, opts.Target.Timeline, l.Complete)
	if err != nil {
		return Meta{}, err
	}
	usable := onTimeline(l.Complete, tli, history)
	m, err := Choose(usable, opts.BackupID, opts.Target)
	if err != nil && len(usable) < len(l.Complete) {
		if named, nerr := Choose(l.Complete, opts.BackupID, opts.Target); nerr == nil {
			return Meta{}, fmt.Errorf("backup %s (timeline %d, ending at %s) cannot recover onto timeline %d, which recovery targets: "+
				"its history leaves that backup's timeline before the backup ends, or never passes it; "+
				"pick a backup with walship info, or set --target-timeline", named.ID, named.StopTimeline, named.StopLSN, tli)
		}
	}
	if err != nil {
		return Meta{}, err
	}
	if len(usable) < len(l.Complete) {
		log.Info("chose among the backups on the target timeline's history", "timeline", tli,
			"usable", len(usable), "complete", len(l.Complete))
	}
	log = log.With("backup", m.ID)

	pgdata, err := filepath.Abs(opts.PGData)
	if err != nil {
		return Meta{}, err
	}
	dirs := map[uint32]string{0: pgdata}
	for _, a := range m.Archives[1:] {
		loc := a.Location
		if to, ok := opts.TablespaceMap[loc]; ok {
			loc = to
		}
		if !filepath.IsAbs(loc) {
			return Meta{}, fmt.Errorf("tablespace %d: location %q is not absolute", a.Tablespace, loc)
		}
		dirs[a.Tablespace] = filepath.Clean(loc)
	}
	for old := range opts.TablespaceMap {
		if !hasLocation(m, old) {
			return Meta{}, fmt.Errorf("--tablespace-map %s: backup %s has no tablespace there (it has %s)", old, m.ID, locations(m))
		}
	}
	seen := map[string]bool{}
	for _, d := range dirs {
		if seen[d] {
			return Meta{}, fmt.Errorf("two of the backup's directories would go to %s: map the tablespaces apart", d)
		}
		seen[d] = true
		if err := checkDir(d, opts.Force); err != nil {
			return Meta{}, err
		}
	}
	man, err := readManifest(ctx, st, m)
	if err != nil {
		return Meta{}, err
	}
	// Only now, with everything checked, empty or make the directories.
	for _, d := range dirs {
		if err := prepareDir(d); err != nil {
			return Meta{}, err
		}
	}
	var chain []Meta
	if m.Incremental() {
		if chain, err = resolveChain(l.Complete, m); err != nil {
			return Meta{}, err
		}
		log.Info("restoring an incremental backup: reconstructing each file from the chain", "chain", chainIDs(chain))
	}
	x := &extractor{man: man, seen: make(map[string]bool, len(man.Files)), prog: opts.Progress,
		total: m.Size, buf: make([]byte, 1<<20), phase: "restore"}
	if chain != nil {
		if err := restoreChain(ctx, st, chain, man, dirs, x); err != nil {
			return Meta{}, err
		}
	} else if err := x.backup(ctx, st, m, dirs); err != nil {
		return Meta{}, err
	}
	report(opts.Progress, Status{Phase: "restore", Done: x.done, Total: max(x.done, x.total)})

	if len(opts.TablespaceMap) > 0 {
		if err := rewriteTablespaceMap(pgdata, dirs); err != nil {
			return Meta{}, err
		}
	}
	if err := writeRecovery(pgdata, m, opts); err != nil {
		return Meta{}, err
	}
	if os.Geteuid() == 0 {
		if err := chownAll(dirs, x.owner); err != nil {
			log.Warn("restored as root, and the files stay root's: chown them to the server's user", "err", err)
		}
	}
	log.Info("backup restored", "pgdata", pgdata, "files", len(man.Files), "bytes", x.done)
	return m, nil
}

func hasLocation(m Meta, loc string) bool {
	for _, a := range m.Archives[1:] {
		if a.Location == loc {
			return true
		}
	}
	return false
}

func locations(m Meta) string {
	var locs []string
	for _, a := range m.Archives[1:] {
		locs = append(locs, a.Location)
	}
	if len(locs) == 0 {
		return "no tablespaces"
	}
	return strings.Join(locs, ", ")
}

// checkDir checks that dir is absent or empty, or, with force, that no
// server runs in it.
func checkDir(dir string, force bool) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case len(entries) == 0:
		return nil
	case !force:
		return fmt.Errorf("%s: %w: restore into a new directory, or pass --force to delete what it holds", dir, ErrNotEmpty)
	}
	if pid, ok := runningPostmaster(dir); ok {
		return fmt.Errorf("%s: a server (pid %d) runs in it: stop it first", dir, pid)
	}
	return nil
}

// prepareDir makes dir, mode 0700, or empties it.
func prepareDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return os.Chmod(dir, 0o700)
}

// runningPostmaster reports the pid in dir/postmaster.pid when that process
// is alive.
func runningPostmaster(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, false
	}
	err = syscall.Kill(pid, 0)
	return pid, err == nil || errors.Is(err, syscall.EPERM)
}

func readManifest(ctx context.Context, st archive.Storage, m Meta) (*Manifest, error) {
	rc, err := openStored(ctx, st, Path(m.ID, m.Manifest))
	if err != nil {
		return nil, fmt.Errorf("backup %s: manifest: %w", m.ID, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<30))
	if err != nil {
		return nil, fmt.Errorf("backup %s: manifest: %w", m.ID, err)
	}
	man, err := ParseManifest(b)
	if err == nil {
		err = man.checkOrigin(pgver.FromVersionNum(m.PGVersion), m.SystemID)
	}
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", m.ID, err)
	}
	return man, nil
}

// openStored opens a file of a backup, decompressing it by its suffix. A
// damaged compressed file reads as an error matching ErrCorrupt.
func openStored(ctx context.Context, st archive.Storage, name string) (io.ReadCloser, error) {
	rc, err := st.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(name, ".zst") {
		return rc, nil
	}
	d, err := archive.Decompress(rc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return readCloser{Reader: corruptReader{d}, close: func() error { d.Close(); return rc.Close() }}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// corruptReader turns archive.ErrCorrupt into this package's ErrCorrupt.
type corruptReader struct{ r io.Reader }

func (c corruptReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && errors.Is(err, archive.ErrCorrupt) {
		err = fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return n, err
}

// extractor writes tar streams to disk, checking each file against the
// manifest.
type extractor struct {
	man      *Manifest
	seen     map[string]bool
	prog     Progress
	total    int64
	done     int64
	reported time.Time
	buf      []byte
	// dry checks the archives without writing anything.
	dry   bool
	phase string // for Progress: "restore" or "verify"
	// owner is the user name the first file of the backup belonged to:
	// the user the server ran as.
	owner string
	// onFile, when set, stores each regular file instead of writing it to
	// target (see chain.go); what it reads is checked against the
	// manifest all the same, and it must read r to its end.
	onFile func(r io.Reader, target, mpath string, h *tar.Header) error
}

// backup extracts every archive of m into dirs (by tablespace; nil when
// dry) and checks that no file of the manifest is missing.
func (x *extractor) backup(ctx context.Context, st archive.Storage, m Meta, dirs map[uint32]string) error {
	for _, a := range m.Archives {
		prefix := ""
		if a.Tablespace != 0 {
			prefix = "pg_tblspc/" + strconv.FormatUint(uint64(a.Tablespace), 10) + "/"
		}
		if err := x.extract(ctx, st, Path(m.ID, a.Name), dirs[a.Tablespace], prefix); err != nil {
			return fmt.Errorf("backup %s: %s: %w", m.ID, a.Name, err)
		}
	}
	var missing []string
	for p := range x.man.Files {
		if !x.seen[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("%w: backup %s lacks %d files of its manifest, such as %s", ErrCorrupt, m.ID, len(missing), missing[0])
	}
	return nil
}

func (x *extractor) extract(ctx context.Context, st archive.Storage, name, dir, prefix string) error {
	rc, err := openStored(ctx, st, name)
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	links := map[string]bool{} // symbolic links made, never written through
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if errors.Is(err, ErrCorrupt) {
				return err
			}
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		rel, err := entryPath(h.Name)
		if err != nil {
			return err
		}
		for p := path.Dir(rel); p != "."; p = path.Dir(p) {
			if links[p] {
				return fmt.Errorf("%w: %s lies below the symbolic link %s", ErrCorrupt, rel, p)
			}
		}
		target := filepath.Join(dir, filepath.FromSlash(rel))
		switch h.Typeflag {
		case tar.TypeDir, tar.TypeSymlink:
			if x.dry {
				links[rel] = h.Typeflag == tar.TypeSymlink
				continue
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			if err := os.Chmod(target, perm(h.Mode)&0o750); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
			links[rel] = true
		case tar.TypeReg:
			if x.owner == "" {
				x.owner = h.Uname
			}
			if err := x.file(tr, target, prefix+rel, h); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: %s: unexpected tar entry type %q", ErrCorrupt, rel, h.Typeflag)
		}
	}
}

// file writes one regular file and checks it against the manifest.
func (x *extractor) file(r io.Reader, target, mpath string, h *tar.Header) error {
	want, ok := x.man.Files[mpath]
	if !ok {
		return fmt.Errorf("%w: %s is not in the backup manifest", ErrCorrupt, mpath)
	}
	if x.seen[mpath] {
		return fmt.Errorf("%w: %s is twice in the backup", ErrCorrupt, mpath)
	}
	x.seen[mpath] = true
	c := &checker{want: want}
	var err error
	switch {
	case x.onFile != nil:
		err = x.onFile(io.TeeReader(r, c), target, mpath, h)
	case x.dry:
		_, err = io.CopyBuffer(c, r, x.buf)
	default:
		err = writeFile(target, perm(h.Mode)&0o640|0o600, c, r, x.buf)
	}
	if err != nil {
		if errors.Is(err, ErrCorrupt) || errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: %s: %w", ErrCorrupt, mpath, err)
		}
		return err
	}
	if err := c.check(mpath); err != nil {
		return err
	}
	x.done += c.n
	if time.Since(x.reported) >= 200*time.Millisecond {
		x.reported = time.Now()
		report(x.prog, Status{Phase: x.phase, Done: x.done, Total: max(x.total, x.done)})
	}
	return nil
}

// chownAll gives everything restored to the user the server ran as on the
// backed up host, when this host knows that user: PostgreSQL refuses a data
// directory it does not own.
func chownAll(dirs map[uint32]string, owner string) error {
	u, err := user.Lookup(owner)
	if err != nil {
		return fmt.Errorf("the backup's files belonged to %q: %w", owner, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("user %s has a non-numeric uid or gid", owner)
	}
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, uid, gid)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes r to a new file at target, and all it writes to also.
func writeFile(target string, mode os.FileMode, also io.Writer, r io.Reader, buf []byte) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return err
	}
	_, err = io.CopyBuffer(io.MultiWriter(f, also), r, buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func perm(mode int64) os.FileMode { return os.FileMode(mode) & os.ModePerm }

// entryPath checks a tar entry's name: relative, clean, inside.
func entryPath(name string) (string, error) {
	// PostgreSQL names pg_wal's entries "./pg_wal/...".
	rel := strings.TrimSuffix(strings.TrimPrefix(name, "./"), "/")
	if rel == "" || strings.HasPrefix(rel, "/") || strings.Contains(rel, "\\") || path.Clean(rel) != rel ||
		rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%w: tar entry %q leaves its directory", ErrCorrupt, name)
	}
	return rel, nil
}

// rewriteTablespaceMap writes the new locations into tablespace_map, which
// the server reads at startup to make the links in pg_tblspc.
func rewriteTablespaceMap(pgdata string, dirs map[uint32]string) error {
	p := filepath.Join(pgdata, "tablespace_map")
	oids := make([]uint32, 0, len(dirs))
	for oid := range dirs {
		if oid != 0 {
			oids = append(oids, oid)
		}
	}
	sort.Slice(oids, func(i, j int) bool { return oids[i] < oids[j] })
	var b bytes.Buffer
	for _, oid := range oids {
		// Escaped as the server writes it (do_pg_backup_start).
		var esc strings.Builder
		for _, c := range dirs[oid] {
			if c == '\n' || c == '\r' || c == '\\' {
				esc.WriteByte('\\')
			}
			esc.WriteRune(c)
		}
		fmt.Fprintf(&b, "%d %s\n", oid, esc.String())
	}
	return writeFileSync(p, b.Bytes())
}

func writeFileSync(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
