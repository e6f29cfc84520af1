package pgtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const (
	sigStop = syscall.SIGSTOP
	sigKill = syscall.SIGKILL
)

func signal(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// procStat returns the state and the parent pid of a process from
// /proc/<pid>/stat.
func procStat(pid int) (state byte, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name, in parentheses, may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("pid %d: malformed stat", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 2 {
		return 0, 0, fmt.Errorf("pid %d: malformed stat", pid)
	}
	ppid, err = strconv.Atoi(fields[1])
	return fields[0][0], ppid, err
}

// alive reports whether a process exists and is not a zombie: a killed
// postmaster has released its port and shared memory even when no one has
// reaped it yet.
func alive(pid int) bool {
	state, _, err := procStat(pid)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false
		}
		// Without /proc, ask the kernel; a zombie then counts as alive.
		return exists(pid)
	}
	return state != 'Z' && state != 'X'
}

// exists reports whether pid names a process, a zombie included.
func exists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// childrenOf returns the pids of the direct children of pid.
func childrenOf(pid int) []int {
	entries, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, e := range entries {
		p, err := strconv.Atoi(filepath.Base(e))
		if err != nil {
			continue
		}
		if _, ppid, err := procStat(p); err == nil && ppid == pid {
			pids = append(pids, p)
		}
	}
	return pids
}

// cmdline returns the command line of a process, for messages.
func cmdline(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}
