package sftptest

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Server is an SSH server with an SFTP subsystem, in the test's process,
// serving a directory. Its rename behaves as OpenSSH's does (link(2) and
// unlink(2), failing when the target exists), and it does not offer
// fsync@openssh.com, so clients take their path for servers without it.
// It creates files 0644 and directories 0755, as a server under umask 022
// does, and sets modes on SETSTAT.
type Server struct {
	Keys
	// Host and Port are where it listens (127.0.0.1); Addr is both.
	Host string
	Port int
	Addr string
	// Root is the local directory that SFTP clients see as "/".
	Root string
	// NoSetstat makes the server answer SETSTAT with "operation
	// unsupported", as servers that cannot set modes do.
	NoSetstat atomic.Bool

	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewServer starts a Server with an empty Root, accepting any user name with
// the client key. It stops when the test ends. It offers HostKey, and
// extraHostKeys too, which known_hosts does not list.
func NewServer(t testing.TB, extraHostKeys ...ssh.Signer) *Server {
	t.Helper()
	dir := t.TempDir()
	keys, _ := newKeys(t, dir)
	s := &Server{Keys: keys, Root: filepath.Join(dir, "root"), conns: make(map[net.Conn]struct{})}
	if err := os.Mkdir(s.Root, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(key.Marshal(), s.ClientKey.PublicKey().Marshal()) {
				return nil, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	cfg.AddHostKey(s.HostKey)
	for _, k := range extraHostKeys {
		cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	s.Host, s.Port = "127.0.0.1", ln.Addr().(*net.TCPAddr).Port
	s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	WriteFile(t, s.KnownHostsFile, []byte(KnownHostsLine(s.Addr, s.HostKey.PublicKey())))

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			if !s.track(nc, true) {
				nc.Close()
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.track(nc, false)
				s.serve(nc, cfg)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.DropConnections()
		s.mu.Lock()
		s.conns = nil // refuse connections accepted from now on
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *Server) track(nc net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		return false
	}
	if add {
		s.conns[nc] = struct{}{}
	} else {
		delete(s.conns, nc)
	}
	return true
}

// DropConnections closes every client connection, as a network failure
// would. The server goes on accepting new ones.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for nc := range s.conns {
		nc.Close()
	}
}

func (s *Server) serve(nc net.Conn, cfg *ssh.ServerConfig) {
	defer nc.Close()
	sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer ch.Close()
			for req := range creqs {
				ok := req.Type == "subsystem" && len(req.Payload) > 4 && string(req.Payload[4:]) == "sftp"
				req.Reply(ok, nil)
				if ok {
					rs := sftp.NewRequestServer(ch, handlers(s))
					rs.Serve()
					rs.Close()
					return
				}
			}
		}()
	}
}

// fsHandler serves a local directory as the SFTP file system.
type fsHandler struct {
	root string
	srv  *Server
}

func handlers(s *Server) sftp.Handlers {
	h := fsHandler{s.Root, s}
	return sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h}
}

// local maps an SFTP path into the root; ".." cannot leave it.
func (h fsHandler) local(p string) string {
	return filepath.Join(h.root, filepath.FromSlash(path.Clean("/"+p)))
}

func (h fsHandler) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	return os.Open(h.local(r.Filepath))
}

func (h fsHandler) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	pf := r.Pflags()
	flags := os.O_WRONLY
	if pf.Read {
		flags = os.O_RDWR
	}
	if pf.Creat {
		flags |= os.O_CREATE
	}
	if pf.Trunc {
		flags |= os.O_TRUNC
	}
	if pf.Excl {
		flags |= os.O_EXCL
	}
	return os.OpenFile(h.local(r.Filepath), flags, 0o644)
}

// PosixRename is OpenSSH's posix-rename@openssh.com: rename(2), which
// replaces the target.
func (h fsHandler) PosixRename(r *sftp.Request) error {
	return os.Rename(h.local(r.Filepath), h.local(r.Target))
}

func (h fsHandler) Filecmd(r *sftp.Request) error {
	p := h.local(r.Filepath)
	switch r.Method {
	case "Setstat":
		if h.srv.NoSetstat.Load() {
			return sftp.ErrSSHFxOpUnsupported
		}
		// Only modes; sizes and times are ignored.
		if r.AttrFlags().Permissions {
			return os.Chmod(p, r.Attributes().FileMode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
		}
		return nil
	case "Rename":
		// As OpenSSH's sftp-server: never replace the target.
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			if _, err := os.Lstat(h.local(r.Target)); err == nil {
				return os.ErrExist
			}
			return os.Rename(p, h.local(r.Target))
		}
		if err := os.Link(p, h.local(r.Target)); err != nil {
			return err
		}
		return os.Remove(p)
	case "Rmdir":
		return syscall.Rmdir(p)
	case "Remove":
		return syscall.Unlink(p)
	case "Mkdir":
		return os.Mkdir(p, 0o755)
	}
	return sftp.ErrSSHFxOpUnsupported
}

func (h fsHandler) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	p := h.local(r.Filepath)
	switch r.Method {
	case "List":
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		var fis listerAt
		for _, e := range entries {
			if fi, err := e.Info(); err == nil {
				fis = append(fis, fi)
			}
		}
		return fis, nil
	case "Stat":
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		return listerAt{fi}, nil
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

// Lstat makes the server answer LSTAT without following links.
func (h fsHandler) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	fi, err := os.Lstat(h.local(r.Filepath))
	if err != nil {
		return nil, err
	}
	return listerAt{fi}, nil
}

type listerAt []os.FileInfo

func (l listerAt) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if off+int64(n) >= int64(len(l)) {
		return n, io.EOF
	}
	return n, nil
}
