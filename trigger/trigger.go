package trigger

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Mode is what a trigger asks of a waiting restore command.
type Mode int

const (
	// None means no trigger: keep waiting for WAL.
	None Mode = iota
	// Smart means restore every segment already archived, then end recovery.
	Smart
	// Fast means end recovery now, without restoring more WAL.
	Fast
)

// String returns "none", "smart" or "fast"; Parse reads back the last two.
func (m Mode) String() string {
	switch m {
	case None:
		return "none"
	case Smart:
		return "smart"
	case Fast:
		return "fast"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ErrUnknownContent is returned for a trigger file that is neither empty nor
// "smart" nor "fast". pg_standby ignored such a file with a warning; callers
// should too, as it may be some other file than the trigger.
var ErrUnknownContent = errors.New("trigger file holds neither smart nor fast")

// maxSize bounds a trigger file: "smart\n" with room for white space. A
// larger file is not a trigger, and reading it whole would be a mistake.
const maxSize = 64

const asciiSpace = " \t\n\v\f\r"

// Parse reads a trigger file's content: empty or "smart" is Smart, "fast" is
// Fast, ignoring ASCII case and surrounding ASCII white space. Anything else
// returns None and an error matching ErrUnknownContent that quotes it.
func Parse(content []byte) (Mode, error) {
	s := bytes.Trim(content, asciiSpace)
	switch {
	case len(s) == 0, equalFoldASCII(s, "smart"):
		return Smart, nil
	case equalFoldASCII(s, "fast"):
		return Fast, nil
	}
	if len(s) > maxSize {
		return None, fmt.Errorf("%w: %q…", ErrUnknownContent, s[:maxSize])
	}
	return None, fmt.Errorf("%w: %q", ErrUnknownContent, s)
}

// equalFoldASCII is bytes.EqualFold without Unicode folding, which would
// read "ſmart" (with a long s) as smart.
func equalFoldASCII(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// Read reads the trigger file at path. A missing file is None and no error.
// A directory, a special file or a file that cannot be read is an error: the
// caller cannot tell whether a trigger is set. A file larger than a trigger
// file, or holding anything else, returns None and ErrUnknownContent.
//
// A file written in place (echo fast > file) is empty for a moment, which
// Read takes as Smart; a waiting restore command reads the file with a
// Reader instead, which waits for an empty file to settle. Write never shows
// a partial file.
func Read(path string) (Mode, error) {
	m, _, err := read(path)
	return m, err
}

// read is Read, also returning what the file was when read (nil when
// missing).
func read(path string) (Mode, fs.FileInfo, error) {
	if path == "" {
		return None, nil, errors.New("read trigger: no trigger file given")
	}
	// O_NONBLOCK: opening a FIFO put there by mistake must not hang.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return None, nil, nil
	}
	if err != nil {
		return None, nil, fmt.Errorf("read trigger: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return None, nil, fmt.Errorf("read trigger: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return None, fi, fmt.Errorf("read trigger %s: not a regular file (%v)", path, fi.Mode().Type())
	}
	if fi.Size() > maxSize {
		return None, fi, fmt.Errorf("trigger file %s: %w: %d bytes is too large", path, ErrUnknownContent, fi.Size())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSize))
	if err != nil {
		return None, fi, fmt.Errorf("read trigger: %w", err)
	}
	if len(b) == 0 {
		fi = emptyFile{fi}
	}
	m, err := Parse(b)
	if err != nil {
		return None, fi, fmt.Errorf("trigger file %s: %w", path, err)
	}
	return m, fi, nil
}

// emptyFile marks the FileInfo of a file read as empty, whatever its size
// says by the time it is looked at.
type emptyFile struct{ fs.FileInfo }

// Write sets the trigger at path to m, which must be Smart or Fast,
// atomically and durably: a reader sees the old file or the new one, and the
// new one survives a crash once Write returns. The file is readable by all,
// so that PostgreSQL's user can read a trigger that root wrote.
func Write(path string, m Mode) error {
	if path == "" {
		return errors.New("write trigger: no trigger file given")
	}
	if m != Smart && m != Fast {
		return fmt.Errorf("write trigger %s: mode %v: want smart or fast", path, m)
	}
	tmp, err := writeTemp(path, m)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("write trigger %s: directory %s does not exist", path, filepath.Dir(path))
	}
	if err != nil {
		return fmt.Errorf("write trigger %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write trigger: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("write trigger %s: %w", path, err)
	}
	return nil
}

// Consume rewrites the trigger at path to Smart after a fast failover was
// answered, atomically and durably, so that a file the server asks for again
// is still served (pg_standby truncated the file for the same reason). A
// missing file is left missing, and not an error: recovery_end_command may
// have removed it already, and recreating it would promote the next standby.
func Consume(path string) error {
	if path == "" {
		return errors.New("consume trigger: no trigger file given")
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("consume trigger: %w", err)
	}
	if fi.IsDir() {
		return fmt.Errorf("consume trigger %s: is a directory", path)
	}
	tmp, err := writeTemp(path, Smart)
	if err != nil {
		return fmt.Errorf("consume trigger: %w", err)
	}
	// Swap rather than rename, so that a trigger removed since the Lstat
	// stays removed. Where the file system cannot swap, the window between
	// Lstat and rename is all that is left.
	err = exchange(tmp, path)
	if errors.Is(err, errNoExchange) {
		err = os.Rename(tmp, path)
	}
	// After a swap tmp holds the old trigger; after a failure, "smart".
	os.Remove(tmp)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("consume trigger %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("consume trigger %s: %w", path, err)
	}
	return nil
}

// writeTemp writes m to a new, unique, synced file beside path and returns
// its name.
func writeTemp(path string, m Mode) (name string, err error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	f, err := os.CreateTemp(dir, "."+base+".*.tmp") // O_EXCL, mode 0600
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o644); err != nil {
		return "", err
	}
	if _, err := f.WriteString(m.String() + "\n"); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// Some file systems (CIFS, some FUSE) cannot sync a directory and say
	// EINVAL; there is nothing more to do on those.
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
