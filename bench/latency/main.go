// Command latency measures how soon `walship wait` hands PostgreSQL a
// segment after the segment appears in the archive. bench/run drives it;
// BENCHMARKS.md explains the figures.
//
// For each of -n segments taken from a walship archive (-src), it:
//
//  1. copies the archived file into the test archive under a hidden
//     temporary name (wal/.NAME.zst.bench), which walship's watcher ignores;
//  2. starts `walship wait --archive A NAME pg_wal/RECOVERYXLOG` in a
//     standby directory, as PostgreSQL starts restore_command;
//  3. waits until the child is blocked: in fsnotify mode until its inotify
//     watch exists (an "inotify wd:" line in /proc/PID/fdinfo), then -settle
//     more; in poll mode 50 ms plus a random fraction of the poll interval,
//     so the arrival falls at a random phase of the polling;
//  4. renames the temporary file to wal/NAME.zst (the atomic step of a push)
//     and notes the time;
//  5. notes the time cmd.Wait returns: latency = exit - rename.
//
// An inotify watch of the harness's own splits the latency: "wake" is the
// rename to the child's open(2) of the archived file, "restore" the open to
// the rename of RECOVERYXLOG into place (decompress, verify, write), "exit"
// the rest. Those times are taken when the harness reads the events, so they
// are approximate (a little late when both CPUs are busy).
//
// Mode "present" places the file before starting the child: the time of a
// restore_command call that finds its segment at once.
//
// Mode "poll" makes walship poll on a local file system, where it would
// normally watch: the child runs in its own user namespace whose inotify
// instance limit is 0 (unshare -U -r, then /proc/sys/user/
// max_inotify_instances = 0), so inotify_init fails and walship falls back to
// polling, as it does on NFS. The run checks walship logged that fallback.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/walship/walship/bench/stats"
)

var (
	walship = flag.String("walship", "bin/walship", "walship binary")
	src     = flag.String("src", "", "walship archive to take segments from")
	n       = flag.Int("n", 100, "segments")
	mode    = flag.String("mode", "fsnotify", "fsnotify, poll or present")
	poll    = flag.Duration("poll", 200*time.Millisecond, "--poll given to walship wait")
	workDir = flag.String("dir", "", "work directory (on the file system under test); emptied first")
	settle  = flag.Duration("settle", 20*time.Millisecond, "fsnotify mode: time left after the watch exists before the rename")
	label   = flag.String("label", "", "row label")
	rawOut  = flag.String("raw", "", "CSV file to append every call to")
	header  = flag.Bool("header", false, "print the table header")
)

const dest = "pg_wal/RECOVERYXLOG"

type event struct {
	wd   int32
	mask uint32
	name string
	at   time.Time
}

func main() {
	flag.Parse()
	if *header {
		fmt.Printf("| %-36s | %6s | %6s | %6s | %6s | %-23s |\n", "wait: mode, archive", "median", "p90", "p99", "max", "median wake/restore/exit")
		fmt.Printf("|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 38), strings.Repeat("-", 8), strings.Repeat("-", 8),
			strings.Repeat("-", 8), strings.Repeat("-", 8), strings.Repeat("-", 25))
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "latency:", err)
		os.Exit(1)
	}
}

func run() error {
	if *src == "" || *workDir == "" {
		return errors.New("need -src and -dir")
	}
	files, err := os.ReadDir(filepath.Join(*src, "wal"))
	if err != nil {
		return err
	}
	var names []string
	for _, f := range files {
		// The WAL files only: a raw one's checksum file (.xxh64) goes in
		// with it, below.
		if f.Type().IsRegular() && !strings.HasPrefix(f.Name(), ".") && !strings.HasSuffix(f.Name(), ".xxh64") {
			names = append(names, f.Name())
		}
	}
	if len(names) < *n {
		return fmt.Errorf("%s/wal has %d files, want %d", *src, len(names), *n)
	}
	names = names[:*n]

	os.RemoveAll(*workDir)
	arch := filepath.Join(*workDir, "archive")
	standby := filepath.Join(*workDir, "standby")
	for _, d := range []string{filepath.Join(arch, "wal"), filepath.Join(standby, "pg_wal")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	id, err := os.ReadFile(filepath.Join(*src, "walship.json"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(arch, "walship.json"), id, 0o640); err != nil {
		return err
	}

	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return err
	}
	walWD, err := unix.InotifyAddWatch(ifd, filepath.Join(arch, "wal"), unix.IN_OPEN)
	if err != nil {
		return err
	}
	destWD, err := unix.InotifyAddWatch(ifd, filepath.Join(standby, "pg_wal"), unix.IN_MOVED_TO)
	if err != nil {
		return err
	}
	events := make(chan event, 1024)
	go readEvents(ifd, events)

	var raw *os.File
	if *rawOut != "" {
		raw, err = os.OpenFile(*rawOut, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer raw.Close()
		if fi, _ := raw.Stat(); fi.Size() == 0 {
			fmt.Fprintln(raw, "label,mode,seq,file,latency_ms,wake_ms,restore_ms,exit_ms")
		}
	}

	var lat, wake, rest, exit []float64
	for i, file := range names {
		seg := file[:24]
		final := filepath.Join(arch, "wal", file)
		tmp := filepath.Join(arch, "wal", "."+file+".bench")
		if err := copyFile(filepath.Join(*src, "wal", file), tmp); err != nil {
			return err
		}
		// A raw segment's checksum file, put in place first: push makes the
		// two durable together, and wait checks the segment against it.
		sum := filepath.Join(arch, "wal", file+".xxh64")
		if err := copyFile(filepath.Join(*src, "wal", file+".xxh64"), sum); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		os.Remove(filepath.Join(standby, dest)) // as the server does before each call
		if *mode == "present" {
			if err := os.Rename(tmp, final); err != nil {
				return err
			}
		}
		drain(events)

		var argv []string
		wait := []string{*walship, "wait", "--archive", arch, "--poll", poll.String(), seg, dest}
		switch *mode {
		case "fsnotify", "present":
			argv = wait
		case "poll":
			argv = append([]string{"unshare", "-U", "-r", "/bin/sh", "-c",
				`echo 0 >/proc/sys/user/max_inotify_instances && exec "$@"`, "sh"}, wait...)
		default:
			return fmt.Errorf("unknown -mode %q", *mode)
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = standby
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.Env = append(os.Environ(), "WALSHIP_LOG_LEVEL=warn")
		started := time.Now()
		if err := cmd.Start(); err != nil {
			return err
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()

		var t0 time.Time // the rename, or the start in present mode
		switch *mode {
		case "present":
			t0 = started
		case "fsnotify":
			if err := awaitWatch(cmd.Process.Pid, exited); err != nil {
				return fmt.Errorf("%s: %w: %s", seg, err, stderr.String())
			}
			time.Sleep(*settle)
		case "poll":
			time.Sleep(50*time.Millisecond + rand.N(*poll))
		}
		if *mode != "present" {
			t0 = time.Now()
			if err := os.Rename(tmp, final); err != nil {
				return err
			}
		}
		var werr error
		select {
		case werr = <-exited:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			return fmt.Errorf("%s: walship wait did not return within 60 s: %s", seg, stderr.String())
		}
		tExit := time.Now()
		if werr != nil {
			return fmt.Errorf("%s: walship wait: %v: %s", seg, werr, stderr.String())
		}
		if fi, err := os.Stat(filepath.Join(standby, dest)); err != nil || fi.Size() != 16<<20 {
			return fmt.Errorf("%s: %s not restored whole: %v", seg, dest, err)
		}
		if *mode == "poll" && i == 0 && !strings.Contains(stderr.String(), "polling instead") {
			return fmt.Errorf("poll mode: walship did not fall back to polling: %s", stderr.String())
		}
		if *mode != "poll" && stderr.Len() > 0 {
			fmt.Fprintf(os.Stderr, "   %s: %s", seg, stderr.String())
		}

		// The child's open of the archived file, and RECOVERYXLOG put in place.
		var tOpen, tDest time.Time
		deadline := time.After(200 * time.Millisecond)
	collect:
		for tOpen.IsZero() || tDest.IsZero() {
			select {
			case ev := <-events:
				switch {
				case ev.wd == int32(walWD) && ev.name == file && tOpen.IsZero() && !ev.at.Before(t0):
					tOpen = ev.at
				case ev.wd == int32(destWD) && ev.name == filepath.Base(dest):
					tDest = ev.at
				}
			case <-deadline:
				break collect
			}
		}
		l := ms(tExit.Sub(t0))
		lat = append(lat, l)
		w, r, x := math.NaN(), math.NaN(), math.NaN()
		if !tOpen.IsZero() && !tDest.IsZero() {
			w, r, x = ms(tOpen.Sub(t0)), ms(tDest.Sub(tOpen)), ms(tExit.Sub(tDest))
			wake, rest, exit = append(wake, w), append(rest, r), append(exit, x)
		}
		if raw != nil {
			fmt.Fprintf(raw, "%q,%s,%d,%s,%.3f,%.3f,%.3f,%.3f\n", *label, *mode, i, file, l, w, r, x)
		}
		os.Remove(final)
		os.Remove(sum)
	}
	fmt.Printf("| %-36s | %6.1f | %6.1f | %6.1f | %6.1f | %6.1f / %5.1f / %4.1f |\n", *label,
		stats.Pct(lat, 50), stats.Pct(lat, 90), stats.Pct(lat, 99), slices.Max(lat), stats.Pct(wake, 50), stats.Pct(rest, 50), stats.Pct(exit, 50))
	return nil
}

// awaitWatch returns once process pid has an inotify watch, which walship
// wait adds before its first look into the archive.
func awaitWatch(pid int, exited <-chan error) error {
	deadline := time.Now().Add(10 * time.Second)
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("walship wait exited before watching: %v", err)
		default:
		}
		ents, _ := os.ReadDir(fdDir)
		for _, e := range ents {
			if l, _ := os.Readlink(filepath.Join(fdDir, e.Name())); l != "anon_inode:inotify" {
				continue
			}
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
			if bytes.Contains(b, []byte("inotify wd:")) {
				return nil
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	return errors.New("no inotify watch after 10 s")
}

// readEvents reads inotify events from fd and timestamps them as they come.
func readEvents(fd int, out chan<- event) {
	buf := make([]byte, 64<<10)
	for {
		k, err := unix.Read(fd, buf)
		now := time.Now()
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			close(out)
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= k; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			out <- event{wd: ev.Wd, mask: ev.Mask, name: string(bytes.TrimRight(name, "\x00")), at: now}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

func drain(ch <-chan event) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, bufio.NewReader(in)); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
