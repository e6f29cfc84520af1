package sftptest

import (
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy forwards TCP connections from its own loopback port to a target, and
// can break them: a network between a client and a server.
type Proxy struct {
	// Host and Port are where it listens (127.0.0.1); Addr is both.
	Host string
	Port int
	Addr string

	target string
	cut    atomic.Int64 // client bytes after which a connection breaks; 0: never
	frozen atomic.Bool
	ln     net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// NewProxy starts a Proxy to target ("host:port"), stopped when the test
// ends. A client verifying host keys needs the server's key listed for the
// proxy's address too.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, target: target, ln: ln, conns: make(map[net.Conn]struct{})}
	p.Addr = net.JoinHostPort(p.Host, strconv.Itoa(p.Port))
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.forward(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.Thaw()
		p.DropConnections()
		p.wg.Wait()
	})
	return p
}

// CutAfter makes every connection from now on break once the client has
// sent n bytes through it; 0 turns that off. Connections already open keep
// the limit they started with.
func (p *Proxy) CutAfter(n int64) { p.cut.Store(n) }

// Freeze stops forwarding data, in both directions, without closing
// anything: a server that stopped answering, or a network that went silent.
// Thaw forwards again.
func (p *Proxy) Freeze() { p.frozen.Store(true) }

// Thaw undoes Freeze.
func (p *Proxy) Thaw() { p.frozen.Store(false) }

// DropConnections breaks every open connection.
func (p *Proxy) DropConnections() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *Proxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
}

func (p *Proxy) forward(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.track(client, server)
	defer p.untrack(client, server)
	var up io.Reader = client
	if n := p.cut.Load(); n > 0 {
		up = io.LimitReader(client, n)
	}
	done := make(chan struct{}, 2)
	go func() {
		p.copy(server, up)
		done <- struct{}{}
	}()
	go func() {
		p.copy(client, server)
		done <- struct{}{}
	}()
	<-done // either side ending, or the cut, ends both
}

// copy copies src to dst, holding data back while the proxy is frozen.
func (p *Proxy) copy(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for n > 0 && p.frozen.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
