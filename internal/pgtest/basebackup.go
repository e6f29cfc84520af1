package pgtest

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/walship/walship/internal/basebackup"
)

// baseBackupTimeout bounds one BaseBackup; a test cluster copies in seconds.
const baseBackupTimeout = 2 * time.Minute

// copyCluster takes a base backup of the server connString names, its WAL
// included, and unpacks it into dir, which must not exist.
func copyCluster(connString, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), baseBackupTimeout)
	defer cancel()
	conn, err := basebackup.Connect(ctx, connString)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	major, err := basebackup.Major(ctx, conn)
	if err != nil {
		return err
	}
	if err := major.CheckBackup(); err != nil {
		return err
	}
	sql, err := basebackup.Command{Label: "pgtest", FastCheckpoint: true, WAL: true}.SQL(major)
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	u := &untar{dir: dir}
	_, _, err = basebackup.Run(ctx, conn, major, sql, func(s basebackup.Start) error {
		if len(s.Tablespaces) > 1 {
			return errors.New("the primary has tablespaces, which BaseBackup does not copy")
		}
		return nil
	}, u)
	return errors.Join(err, u.close())
}

// untar unpacks base.tar into dir as it streams in.
type untar struct {
	dir  string
	pw   *io.PipeWriter
	done chan error
}

func (u *untar) Archive(name, _ string) error {
	if name != "base.tar" || u.pw != nil {
		return fmt.Errorf("unexpected archive %s", name)
	}
	pr, pw := io.Pipe()
	u.pw, u.done = pw, make(chan error, 1)
	go func() {
		err := extract(tar.NewReader(pr), u.dir)
		pr.CloseWithError(errors.Join(err, io.ErrClosedPipe))
		u.done <- err
	}()
	return nil
}

func (u *untar) Manifest() error { return errors.New("unexpected manifest") }

func (u *untar) Data(p []byte) error {
	if u.pw == nil {
		return errors.New("data before base.tar")
	}
	_, err := u.pw.Write(p)
	return err
}

func (u *untar) Progress(int64) {}

func (u *untar) close() error {
	if u.pw == nil {
		return errors.New("the server sent no base.tar")
	}
	u.pw.Close()
	return <-u.done
}

// extract writes the regular files, directories and symbolic links of a
// tar archive below dir.
func extract(tr *tar.Reader, dir string) error {
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if name == "." {
			continue
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("tar entry %q outside the data directory", h.Name)
		}
		path := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, path); err != nil {
				return err
			}
		default:
			return fmt.Errorf("tar entry %q of type %q", h.Name, h.Typeflag)
		}
	}
}
