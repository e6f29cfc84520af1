package sftp

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/walship/walship/archive"
)

// connError is an error of reaching the archive. It matches
// archive.ErrUnavailable when trying again may help, and kind
// (ErrUnknownHostKey…) when set, and wraps nothing else: no cause, such as a
// missing key file, may ever match fs.ErrNotExist.
type connError struct {
	msg         string
	unavailable bool
	kind        error
}

func (e *connError) Error() string { return e.msg }
func (e *connError) Unwrap() error { return e.kind }

func (e *connError) Is(target error) bool {
	return e.unavailable && target == archive.ErrUnavailable
}

// conn is one SSH connection with its SFTP session.
type conn struct {
	ssh   *ssh.Client
	sftp  *sftp.Client
	fsync bool // the server offers fsync@openssh.com

	once sync.Once
	why  error         // why it went; set before gone is closed
	gone chan struct{} // closed once the connection is unusable
}

// kill closes the connection, for the reason why, unless it is closed
// already. Requests waiting for an answer fail at once.
func (c *conn) kill(why error) {
	c.once.Do(func() {
		c.why = why
		close(c.gone)
		c.ssh.Close()
		c.sftp.Close()
	})
}

func (c *conn) dead() bool {
	select {
	case <-c.gone:
		return true
	default:
		return false
	}
}

// cause says why a dead connection went.
func (c *conn) cause() error {
	<-c.gone
	return c.why
}

// watch is the timeout of one exchange with the server: when it fires, or
// ctx is done, it kills the connection, which ends the exchange.
type watch struct {
	t       *time.Timer
	d       time.Duration
	stopCtx func() bool
}

func (c *conn) watch(ctx context.Context, d time.Duration) *watch {
	return &watch{
		d:       d,
		t:       time.AfterFunc(d, func() { c.kill(fmt.Errorf("no answer from the server for %v", d)) }),
		stopCtx: context.AfterFunc(ctx, func() { c.kill(fmt.Errorf("cancelled: %w", context.Cause(ctx))) }),
	}
}

// pause and resume stop the clock while the caller waits for something other
// than the server.
func (w *watch) pause()  { w.t.Stop() }
func (w *watch) resume() { w.t.Reset(w.d) }
func (w *watch) stop()   { w.t.Stop(); w.stopCtx() }

// conn returns the connection, dialing a new one when there is none or the
// last one broke.
func (s *Storage) conn(ctx context.Context) (*conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	c, closed := s.c, s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return nil, fmt.Errorf("sftp %s: %w", s.name, fs.ErrClosed)
	case c != nil && !c.dead():
		return c, nil
	}

	select {
	case <-s.dialing:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { s.dialing <- struct{}{} }()
	var lost error
	s.mu.Lock()
	c, closed = s.c, s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return nil, fmt.Errorf("sftp %s: %w", s.name, fs.ErrClosed)
	case c != nil && !c.dead():
		return c, nil // another caller dialed meanwhile
	case c != nil:
		lost = c.cause()
	}

	start := time.Now()
	c, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.checkRoot(ctx, c); err != nil {
		c.kill(err)
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.kill(fs.ErrClosed)
		return nil, fmt.Errorf("sftp %s: %w", s.name, fs.ErrClosed)
	}
	s.c = c
	orphans := s.orphans
	s.orphans = nil
	s.mu.Unlock()

	log := s.cfg.Logger.With("archive", s.name)
	if lost != nil {
		log.Info("reconnected to the archive", "ms", time.Since(start).Milliseconds(), "after", lost.Error())
	} else {
		log.Debug("connected to the archive", "ms", time.Since(start).Milliseconds(), "fsync", c.fsync)
	}
	for _, p := range orphans {
		if err := s.call(ctx, c, "remove", p, func() error { return c.sftp.Remove(p) }); err != nil && !archive.IsNotExist(err) {
			log.Warn("cannot remove the temporary file of a failed put", "path", p, "err", err)
		}
	}
	return c, nil
}

// checkRoot makes sure the archive directory exists, so that a typo in the
// URL is reported rather than filled.
func (s *Storage) checkRoot(ctx context.Context, c *conn) error {
	var fi os.FileInfo
	err := s.call(ctx, c, "stat", s.cfg.Path, func() (err error) { fi, err = c.sftp.Stat(s.cfg.Path); return err })
	switch {
	case archive.IsNotExist(err):
		return &connError{msg: fmt.Sprintf("archive directory %s does not exist on %s: create it (ssh %s mkdir -p %s)",
			s.cfg.Path, s.addr, s.login(), s.cfg.Path)}
	case err != nil:
		return err
	case !fi.IsDir():
		return &connError{msg: fmt.Sprintf("archive %s on %s is not a directory", s.cfg.Path, s.addr)}
	}
	return nil
}

// do runs fn on the connection, dialing first if needed; see call.
func (s *Storage) do(ctx context.Context, op, p string, fn func(c *conn) error) error {
	c, err := s.conn(ctx)
	if err != nil {
		return err
	}
	return s.call(ctx, c, op, p, func() error { return fn(c) })
}

// call runs fn, one exchange with the server, under the I/O timeout and ctx,
// and sorts its error: the server's answer (a missing file, permission
// denied) is returned as an *fs.PathError; anything else means the
// connection is broken, which is closed so the next call dials again, and
// the error matches archive.ErrUnavailable and never fs.ErrNotExist.
func (s *Storage) call(ctx context.Context, c *conn, op, p string, fn func() error) error {
	w := c.watch(ctx, s.cfg.IOTimeout)
	err := fn()
	w.stop()
	return s.check(ctx, c, op, p, err)
}

func (s *Storage) check(ctx context.Context, c *conn, op, p string, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%s %s: %w", op, p, ctx.Err())
	case !c.dead() && isAnswer(err):
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return &fs.PathError{Op: op, Path: s.cfg.Host + ":" + p, Err: err}
	}
	c.kill(err)
	return &connError{
		msg:         fmt.Sprintf("%s %s: connection to %s lost: %v", op, p, s.addr, c.cause()),
		unavailable: true,
	}
}

// isAnswer reports whether err is the server's answer to a request, rather
// than the failure of the connection.
func isAnswer(err error) bool {
	var se *sftp.StatusError
	if errors.As(err, &se) {
		return se.FxCode() != sftp.ErrSSHFxNoConnection && se.FxCode() != sftp.ErrSSHFxConnectionLost
	}
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission)
}

// dial connects, verifies the host key, logs in and starts SFTP.
func (s *Storage) dial(parent context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(parent, s.cfg.DialTimeout)
	defer cancel()
	login := s.cfg.User
	if login == "" {
		u, err := user.Current()
		if err != nil {
			return nil, &connError{msg: fmt.Sprintf("sftp %s: no user name in the URL, and the current user is unknown: %v", s.addr, err)}
		}
		login = u.Username
	}
	hk, err := s.hostKeys()
	if err != nil {
		return nil, &connError{msg: fmt.Sprintf("sftp %s: %v", s.addr, err)}
	}
	keys, err := s.keys()
	if err != nil {
		return nil, err
	}
	defer keys.close()

	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, s.dialError(parent, ctx, err)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	var hkErr error
	sc, chans, reqs, err := ssh.NewClientConn(raw, s.addr, &ssh.ClientConfig{
		User: login,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(keys.signers...)},
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			hkErr = hk.check(host, remote, key)
			return hkErr
		},
		HostKeyAlgorithms: hk.algorithms(),
	})
	if err != nil {
		raw.Close()
		switch {
		case hkErr != nil:
			return nil, hkErr
		case ctx.Err() == nil && strings.Contains(err.Error(), "unable to authenticate"):
			return nil, &connError{msg: fmt.Sprintf("sftp %s: log in as %s: the server accepts none of the keys tried (%s): "+
				"add the public key to ~%s/.ssh/authorized_keys on the server (ssh-copy-id -i KEY.pub %s), "+
				"or pass --identity with a key it accepts", s.addr, login, strings.Join(keys.names, ", "), login, s.login())}
		}
		return nil, s.dialError(parent, ctx, err)
	}
	client := ssh.NewClient(sc, chans, reqs)
	sc2, err := sftp.NewClient(client, sftp.UseConcurrentWrites(true))
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		client.Close()
		if ctx.Err() == nil && strings.Contains(err.Error(), "subsystem request failed") {
			return nil, &connError{msg: fmt.Sprintf("sftp %s: the SSH server offers no SFTP: "+
				"add \"Subsystem sftp internal-sftp\" to its sshd_config", s.addr)}
		}
		return nil, s.dialError(parent, ctx, err)
	}
	ext, ok := sc2.HasExtension("fsync@openssh.com")
	c := &conn{ssh: client, sftp: sc2, fsync: ok && ext == "1", gone: make(chan struct{})}
	go func() {
		err := client.Wait()
		c.kill(fmt.Errorf("the server closed the connection: %v", err))
	}()
	go func() {
		err := sc2.Wait()
		c.kill(fmt.Errorf("the SFTP session ended: %v", err))
	}()
	return c, nil
}

// dialError describes a failure to connect, which is worth a retry unless
// the caller gave up.
func (s *Storage) dialError(parent, ctx context.Context, err error) error {
	switch {
	case parent.Err() != nil:
		return fmt.Errorf("sftp %s: %w", s.addr, parent.Err())
	case ctx.Err() != nil:
		err = fmt.Errorf("no answer within %v", s.cfg.DialTimeout)
	}
	return &connError{unavailable: true, msg: fmt.Sprintf("sftp %s: connect: %v", s.addr, err)}
}
