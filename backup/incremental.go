package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/internal/basebackup"
	"github.com/walship/walship/internal/pgver"
)

// IncrementalMode says whether Backup takes an incremental backup.
type IncrementalMode string

// The modes of Options.Incremental.
const (
	// Full takes a full backup (the zero value).
	Full IncrementalMode = ""
	// Incremental takes an incremental backup or fails, saying why and
	// what to do.
	Incremental IncrementalMode = "on"
	// IncrementalAuto takes an incremental backup where the server can,
	// and a full one, with a log line saying why, where it cannot.
	IncrementalAuto IncrementalMode = "auto"
)

// ParseIncrementalMode reads --incremental's value: "", "false" or "off"
// (full), "true" or "on", "auto".
func ParseIncrementalMode(s string) (IncrementalMode, error) {
	switch strings.ToLower(s) {
	case "", "false", "off", "no":
		return Full, nil
	case "true", "on", "yes":
		return Incremental, nil
	case "auto":
		return IncrementalAuto, nil
	}
	return "", fmt.Errorf("incremental %q: use on, off or auto", s)
}

// ErrNoIncremental says the server or the archive cannot give an
// incremental backup; the message says why and what to do.
var ErrNoIncremental = errors.New("cannot take an incremental backup")

// chooseParent decides what an incremental backup builds on: the backup
// opts.Parent names, or the newest complete one. It returns nil for a full
// backup: when one is asked for, or, with IncrementalAuto, when an
// incremental one cannot be taken (logged with the reason).
func chooseParent(ctx context.Context, st archive.Storage, conn *pgconn.PgConn, si serverInfo, opts Options, log *slog.Logger) (*Meta, error) {
	if opts.Incremental == Full {
		if opts.Parent != "" {
			return nil, fmt.Errorf("a parent backup (%s) needs an incremental backup", opts.Parent)
		}
		return nil, nil
	}
	parent, err := incrementalParent(ctx, st, conn, si, opts)
	if err == nil {
		return parent, nil
	}
	if opts.Incremental == IncrementalAuto && errors.Is(err, ErrNoIncremental) {
		log.Info("taking a full backup instead of an incremental one", "reason", err)
		return nil, nil
	}
	return nil, err
}

func incrementalParent(ctx context.Context, st archive.Storage, conn *pgconn.PgConn, si serverInfo, opts Options) (*Meta, error) {
	if !si.Major.IncrementalBackup() {
		return nil, fmt.Errorf("%w: the server runs %s, and incremental backups need PostgreSQL 17 or later: "+
			"take a full backup (without --incremental), or pass --incremental=auto to fall back to one", ErrNoIncremental, si.Major)
	}
	v, err := basebackup.Show(ctx, conn, "summarize_wal")
	if err != nil {
		return nil, err
	}
	if v != "on" {
		return nil, fmt.Errorf("%w: summarize_wal is off on the server: set it on (ALTER SYSTEM SET summarize_wal = on; "+
			"SELECT pg_reload_conf()), then take a full backup for the incremental ones to build on", ErrNoIncremental)
	}
	l, err := List(ctx, st)
	if err != nil {
		return nil, err
	}
	var parent *Meta
	for i := range l.Complete {
		m := &l.Complete[i]
		if opts.Parent == "" || m.ID == opts.Parent {
			parent = m
		}
	}
	switch {
	case parent == nil && opts.Parent != "":
		return nil, fmt.Errorf("%w: no complete backup %s to build on (walship info lists them)", ErrNoIncremental, opts.Parent)
	case parent == nil:
		return nil, fmt.Errorf("%w: the archive holds no complete backup to build on: take a full backup first", ErrNoIncremental)
	case pgver.FromVersionNum(parent.PGVersion) != si.Major:
		return nil, fmt.Errorf("%w: backup %s is of PostgreSQL %d, the server runs %s: take a full backup",
			ErrNoIncremental, parent.ID, pgver.FromVersionNum(parent.PGVersion), si.Major)
	case parent.SystemID != si.SystemID:
		return nil, fmt.Errorf("%w: backup %s is of another database system (%d, the server is %d)",
			ErrNoIncremental, parent.ID, parent.SystemID, si.SystemID)
	}
	return parent, nil
}

// uploadParentManifest sends the parent's stored manifest to the server.
func uploadParentManifest(ctx context.Context, st archive.Storage, conn *pgconn.PgConn, parent Meta) error {
	rc, err := openStored(ctx, st, Path(parent.ID, parent.Manifest))
	if err != nil {
		return fmt.Errorf("backup %s: manifest: %w", parent.ID, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<30))
	if err != nil {
		return fmt.Errorf("backup %s: manifest: %w", parent.ID, err)
	}
	// Check it before the server trusts it.
	if _, err := ParseManifest(b); err != nil {
		return fmt.Errorf("backup %s: %w", parent.ID, err)
	}
	return basebackup.UploadManifest(ctx, conn, strings.NewReader(string(b)))
}

// incrementalRefused turns the server's refusal of an incremental backup
// into an error that says what to do, matching ErrNoIncremental.
func incrementalRefused(err error, parent Meta) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	fix := "take a full backup (without --incremental), or pass --incremental=auto to fall back to one"
	if strings.Contains(strings.ToLower(pgErr.Message+pgErr.Detail), "summar") {
		fix = "the WAL summaries since backup " + parent.ID + " are gone (wal_summary_keep_time) or were never written " +
			"(summarize_wal was off): " + fix
	}
	if pgErr.Hint != "" {
		// "This can happen for incremental backups on a standby if there
		// was little activity since the previous backup."
		fix = pgErr.Hint + " (on a standby: a CHECKPOINT on the primary lets the standby start past the parent); " + fix
	}
	return fmt.Errorf("%w on backup %s: %w: %s", ErrNoIncremental, parent.ID, err, fix)
}
