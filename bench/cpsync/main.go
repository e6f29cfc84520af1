// Command cpsync is the near-physical limit that bench/run compares walship
// push with: the least a durable archive_command must do, in one process.
//
//	cpsync SRC DST
//
// It copies SRC to a temporary file beside DST with 1 MiB read(2)/write(2)
// calls (as walship does), fsyncs it, renames it to DST and fsyncs DST's
// directory. No checks, no compression.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: cpsync SRC DST")
		os.Exit(2)
	}
	if err := cpsync(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "cpsync:", err)
		os.Exit(1)
	}
}

func cpsync(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	dir := filepath.Dir(dst)
	tmp := filepath.Join(dir, "."+filepath.Base(dst)+".tmp")
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	// Wrapping hides os.File's ReaderFrom/WriterTo, so this is a plain
	// read/write loop, like walship's copy.
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, buf); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
