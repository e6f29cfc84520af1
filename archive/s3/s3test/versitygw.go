// Package s3test starts a real S3 server for tests: versitygw, serving a
// temporary directory on a loopback port.
package s3test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walship/walship/internal/pgtest"
)

// Version is the versitygw release the tests are written against; .ci/run
// installs it.
const Version = "v1.8.0"

// InstallHint says how to get versitygw.
const InstallHint = "go install github.com/versity/versitygw/cmd/versitygw@" + Version +
	" (or set WALSHIP_VERSITYGW to its path)"

// Credentials of the server's root user.
const (
	AccessKey = "walship-test-access"
	SecretKey = "walship-test-secret-key-0123456789"
	Region    = "us-east-1"
)

const startTimeout = 20 * time.Second

// Server is a versitygw on 127.0.0.1, its posix backend in Dir: each
// directory at the top of Dir is a bucket.
type Server struct {
	// Endpoint is its base URL, http://127.0.0.1:PORT; Addr the host and port.
	Endpoint string
	Addr     string
	// Dir holds the buckets; AccessLog is the file of its request log,
	// one line per request.
	Dir       string
	AccessLog string

	bin    string
	log    *syncBuffer
	cmd    *exec.Cmd
	exited chan struct{}
}

// Binary returns the path of versitygw: WALSHIP_VERSITYGW, else the one
// on PATH, else the one in $(go env GOPATH)/bin.
func Binary() (string, error) {
	if p := os.Getenv("WALSHIP_VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("WALSHIP_VERSITYGW: %w", err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("versitygw not found on PATH, in $(go env GOPATH)/bin, nor in WALSHIP_VERSITYGW")
}

// Start starts a versitygw for the test, stopped when the test ends. A
// missing versitygw fails the test, in CI and everywhere else: the S3
// backend is tested against a real server or not at all.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatalf("the S3 tests need versitygw %s: %v: install it with %s", Version, err, InstallHint)
	}
	dir := t.TempDir()
	s := &Server{Dir: filepath.Join(dir, "data"), AccessLog: filepath.Join(dir, "access.log"), bin: bin}
	if err := os.Mkdir(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() && s.log != nil {
			t.Logf("versitygw log:\n%s", s.log.String())
		}
		s.stop()
	})
	for attempt := 1; ; attempt++ {
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(pgtest.FreePort(t)))
		s.Endpoint = "http://" + s.Addr
		err := s.start()
		if err == nil {
			return s
		}
		if attempt < 5 && strings.Contains(s.log.String(), "address already in use") {
			continue
		}
		t.Fatalf("start versitygw: %v\n%s", err, s.log.String())
	}
}

// Bucket creates a bucket, an empty directory, and returns its name.
func (s *Server) Bucket(t testing.TB, name string) string {
	t.Helper()
	if err := os.Mkdir(filepath.Join(s.Dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
	return name
}

// Env returns the environment variables that point the AWS chain (and so
// walship) at the server.
func (s *Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + AccessKey, "AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_REGION=" + Region, "AWS_ENDPOINT_URL=" + s.Endpoint, "AWS_EC2_METADATA_DISABLED=true"}
}

// Stop stops the server, as if the object store went down: connections
// break, new ones are refused.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if s.cmd == nil {
		t.Fatal("versitygw is not running")
	}
	s.stop()
}

// Restart starts a stopped server again, on the same port and directory.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if s.cmd != nil {
		t.Fatal("versitygw is running already")
	}
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.start()
		if err == nil {
			return
		}
		if time.Now().Before(deadline) && strings.Contains(s.log.String(), "address already in use") {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		t.Fatalf("restart versitygw: %v\n%s", err, s.log.String())
	}
}

// Requests returns the number of requests the server logged so far.
func (s *Server) Requests(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile(s.AccessLog)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

// Log returns what the server printed so far.
func (s *Server) Log() string { return s.log.String() }

func (s *Server) start() error {
	s.log = &syncBuffer{}
	cmd := exec.Command(s.bin, "--access", AccessKey, "--secret", SecretKey, "--region", Region,
		"--port", s.Addr, "--quiet", "--access-log", s.AccessLog, "posix", s.Dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID=", "ROOT_SECRET_ACCESS_KEY=")
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-s.exited:
			s.cmd = nil
			return fmt.Errorf("versitygw exited: %v", cmd.ProcessState)
		default:
		}
		if answers(s.Endpoint) {
			return nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("versitygw did not answer on %s within %v", s.Addr, startTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// answers reports whether an HTTP server answers at endpoint.
func answers(endpoint string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(endpoint + "/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

func (s *Server) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
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
