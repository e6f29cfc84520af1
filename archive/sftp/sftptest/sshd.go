package sftptest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/walship/walship/internal/pgtest"
)

// SSHDPath is where the tests take OpenSSH's sshd from; sshd insists on an
// absolute path.
const SSHDPath = "/usr/sbin/sshd"

// startTimeout bounds the wait for sshd to listen.
const startTimeout = 20 * time.Second

// SSHD is a real OpenSSH sshd on a loopback port, with its own configuration
// and host key, letting the current user log in with the client key only.
// Its SFTP subsystem is internal-sftp.
type SSHD struct {
	Keys
	// Host and Port are where it listens (127.0.0.1); Addr is both.
	Host string
	Port int
	Addr string
	// User is the login name, the user the test runs as.
	User string
	// Dir holds the configuration, the keys and the log.
	Dir string

	config string
	log    *syncBuffer
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartSSHD starts an sshd for the test, stopped when the test ends. A
// missing sshd fails the test: install the Debian package openssh-server.
// Running as root, it creates /run/sshd, sshd's privilege separation
// directory.
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	if _, err := os.Stat(SSHDPath); err != nil {
		t.Fatalf("OpenSSH's sshd is needed at %s for the SFTP tests (%v): install the Debian package openssh-server (apt-get install openssh-server openssh-client)", SSHDPath, err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("create sshd's privilege separation directory: %v", err)
		}
	}
	dir := t.TempDir()
	keys, hostPEM := newKeys(t, dir)
	d := &SSHD{Keys: keys, Host: "127.0.0.1", User: u.Username, Dir: dir, config: filepath.Join(dir, "sshd_config")}
	WriteFile(t, filepath.Join(dir, "ssh_host_ed25519_key"), hostPEM)
	WriteFile(t, filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(d.ClientKey.PublicKey()))
	t.Cleanup(func() {
		if t.Failed() && d.log != nil {
			t.Logf("sshd log:\n%s", d.log.String())
		}
		d.stop()
	})
	for attempt := 1; ; attempt++ {
		d.Port = pgtest.FreePort(t)
		d.Addr = net.JoinHostPort(d.Host, strconv.Itoa(d.Port))
		err := d.start(t)
		if err == nil {
			break
		}
		if attempt < 5 && strings.Contains(d.log.String(), "Address already in use") {
			continue
		}
		t.Fatalf("start sshd: %v\n%s", err, d.log.String())
	}
	WriteFile(t, d.KnownHostsFile, []byte(KnownHostsLine(d.Addr, d.HostKey.PublicKey())))
	return d
}

// Stop stops sshd and every session it runs, as if the host went down:
// clients see their connections break and new ones refused.
func (d *SSHD) Stop(t testing.TB) {
	t.Helper()
	if d.cmd == nil {
		t.Fatal("sshd is not running")
	}
	d.stop()
}

// Start starts a stopped sshd again, on the same port.
func (d *SSHD) Start(t testing.TB) {
	t.Helper()
	if d.cmd != nil {
		t.Fatal("sshd is running already")
	}
	deadline := time.Now().Add(startTimeout)
	for {
		err := d.start(t)
		if err == nil {
			return
		}
		// The port can stay taken for a moment after the old sshd.
		if time.Now().Before(deadline) && strings.Contains(d.log.String(), "Address already in use") {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		t.Fatalf("restart sshd: %v\n%s", err, d.log.String())
	}
}

// Log returns what sshd logged so far.
func (d *SSHD) Log() string { return d.log.String() }

func (d *SSHD) start(t testing.TB) error {
	t.Helper()
	conf := fmt.Sprintf(`# Written by sftptest.
Port %d
ListenAddress %s
HostKey %s
PidFile none
UsePAM no
StrictModes no
AuthorizedKeysFile %s
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers %s
UseDNS no
MaxStartups 100
MaxSessions 100
Subsystem sftp internal-sftp
LogLevel VERBOSE
`, d.Port, d.Host, filepath.Join(d.Dir, "ssh_host_ed25519_key"), filepath.Join(d.Dir, "authorized_keys"), d.User)
	WriteFile(t, d.config, []byte(conf))
	d.log = &syncBuffer{}
	cmd := exec.Command(SSHDPath, "-D", "-e", "-f", d.config)
	cmd.Stdout, cmd.Stderr = d.log, d.log
	if err := cmd.Start(); err != nil {
		return err
	}
	d.cmd, d.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-d.exited:
			d.cmd = nil
			return fmt.Errorf("sshd exited: %v", cmd.ProcessState)
		default:
		}
		if banner(d.Addr) {
			return nil
		}
		if time.Now().After(deadline) {
			d.stop()
			return fmt.Errorf("sshd did not answer on %s within %v", d.Addr, startTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// banner reports whether an SSH server answers on addr.
func banner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-")
}

// stop kills sshd and its descendants: each connection runs in processes of
// its own session, which outlive the listener otherwise.
func (d *SSHD) stop() {
	if d.cmd == nil {
		return
	}
	pid := d.cmd.Process.Pid
	syscall.Kill(pid, syscall.SIGSTOP) // no new children while we look
	pids := descendants(pid)
	d.cmd.Process.Kill()
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGKILL)
	}
	<-d.exited
	// Wait until the killed sessions are gone, so their connections broke.
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range pids {
		for alive(p) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	d.cmd = nil
}

// descendants returns the pids of every process below pid.
func descendants(pid int) []int {
	children := make(map[int][]int)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, err := procStat(p); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, children[p]...)
		queue = append(queue, children[p]...)
	}
	return out
}

// alive reports whether a process exists and is not a zombie.
func alive(pid int) bool {
	state, _, err := procStat(pid)
	return err == nil && state != 'Z' && state != 'X'
}

// procStat reads a process's state and parent from /proc/<pid>/stat.
func procStat(pid int) (state byte, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0, errors.New("malformed stat")
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err
}

// syncBuffer is a bytes.Buffer safe for a process's output and the test to
// share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
