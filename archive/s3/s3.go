package s3

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walship/walship/archive"
)

// Defaults of a Config.
const (
	DefaultTimeout = 30 * time.Second
	DefaultRegion  = "us-east-1"
	// DefaultPartSize holds a 16 MiB segment in its zstd frame, even one
	// that does not compress, so that it goes up in one request.
	DefaultPartSize = 20 << 20
	// DefaultPartsInFlight is how many parts of one multipart upload are
	// sent at once; Put holds one more in memory while it reads.
	DefaultPartsInFlight = 2
	// minPartSize is S3's smallest part but the last.
	minPartSize = 5 << 20
	// maxParts is S3's limit on the parts of one upload.
	maxParts = 10000
)

// Config says where an S3 archive is and how to reach it. Fields left
// empty are taken the standard AWS way (see New).
type Config struct {
	// Bucket is the bucket; Prefix the key prefix of the archive in it,
	// without slashes at either end, "" for the whole bucket.
	Bucket string
	Prefix string

	// Endpoint is the server's base URL (https://minio.example:9000,
	// http://127.0.0.1:7070). Empty means AWS_ENDPOINT_URL_S3,
	// AWS_ENDPOINT_URL, the profile's endpoint_url, or AWS S3 itself.
	Endpoint string
	// Region signs requests; empty means AWS_REGION, AWS_DEFAULT_REGION,
	// the profile's region, or DefaultRegion.
	Region string
	// PathStyle addresses the bucket in the path (endpoint/bucket/key)
	// instead of the host name (bucket.endpoint/key), as most self-hosted
	// servers need. A bucket name with dots on https implies it.
	PathStyle bool
	// Profile is the profile of the shared AWS files; empty means
	// AWS_PROFILE, or "default". CredentialsFile replaces
	// ~/.aws/credentials (and AWS_SHARED_CREDENTIALS_FILE).
	Profile         string
	CredentialsFile string

	// Timeout bounds every request: connecting, and each wait for the
	// server (an answer, or the next bytes of one). Zero means
	// DefaultTimeout.
	Timeout time.Duration
	// PartSize is the size of the parts of a multipart upload, and the
	// largest file Put sends in one request; PartsInFlight how many parts
	// are sent at once. Zero means the defaults.
	PartSize      int
	PartsInFlight int

	// CABundle is a PEM file of the certificate authorities trusted for
	// an https endpoint instead of the system's; empty means
	// AWS_CA_BUNDLE, the profile's ca_bundle, or the system's store.
	// Loading the system's store is most of the cost of a call's first
	// https request (8 ms on Debian, which has 430 roots to parse).
	CABundle string
	// TLSSessionDir, when set, keeps the TLS sessions of https endpoints
	// in files there, so that the next process resumes one instead of
	// making a whole handshake (see tlscache.go). Empty keeps them in
	// memory only.
	TLSSessionDir string

	// Logger receives warnings (a server without conditional writes);
	// nil logs nothing.
	Logger *slog.Logger
	// Getenv reads the environment; nil means os.Getenv. Tests replace it.
	Getenv func(string) string
	// HTTPClient sends the requests; nil means one of walship's own, with
	// Timeout applied. Tests replace it.
	HTTPClient *http.Client
}

// Storage is an archive under a prefix of an S3 bucket.
type Storage struct {
	cfg      Config
	name     string   // the URL, for String
	endpoint *url.URL // scheme and host of requests
	root     string   // key prefix of the archive, "" or ending in "/"
	sign     signer
	creds    *credentialChain
	client   *http.Client

	// bucketOK is set once the bucket is known to exist: a HEAD answer
	// 404 has no body to tell a missing key from a missing bucket.
	bucketOK atomic.Bool
	bucketMu sync.Mutex // one checkBucket at a time: concurrent HEADs share its answer
	// noConditional is set once the server refused If-None-Match.
	noConditional atomic.Bool
	warnOnce      sync.Once

	// dirs holds the directories whose marker is known to exist.
	dirs sync.Map
	// pending holds the Puts of this process still reading their input.
	pending pendingPuts

	lastCreds atomic.Pointer[credentials]
}

var (
	_ archive.Storage   = (*Storage)(nil)
	_ archive.TempFiles = (*Storage)(nil)
)

// New returns a Storage for the archive cfg describes, without a request:
// the first call reaches the server. It reads the shared AWS files of the
// profile, and fails only on a malformed Config or unreadable files.
func New(cfg Config) (*Storage, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3: no bucket")
	}
	cfg.Prefix = strings.Trim(cfg.Prefix, "/")
	env := cfg.Getenv
	if env == nil {
		env = os.Getenv
	}
	prof, err := loadProfile(cfg.Profile, cfg.CredentialsFile, env)
	if err != nil {
		return nil, fmt.Errorf("s3: read the AWS profile: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = firstOf(env("AWS_REGION"), env("AWS_DEFAULT_REGION"), prof.Region, DefaultRegion)
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = firstOf(env("AWS_ENDPOINT_URL_S3"), env("AWS_ENDPOINT_URL"), prof.EndpointURL)
	}
	aws := cfg.Endpoint == ""
	if aws {
		cfg.Endpoint = "https://s3." + cfg.Region + ".amazonaws.com"
	}
	ep, err := url.Parse(cfg.Endpoint)
	if err != nil || (ep.Scheme != "http" && ep.Scheme != "https") || ep.Host == "" || (ep.Path != "" && ep.Path != "/") ||
		ep.RawQuery != "" || ep.User != nil {
		return nil, fmt.Errorf("s3: endpoint %q: write the server's base URL, such as https://s3.example.com or http://127.0.0.1:7070", cfg.Endpoint)
	}
	if ep.Scheme == "https" && strings.Contains(cfg.Bucket, ".") {
		cfg.PathStyle = true // a dotted bucket breaks the wildcard certificate
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < minPartSize {
		return nil, fmt.Errorf("s3: part size %d is below S3's minimum of 5 MiB", cfg.PartSize)
	}
	if cfg.PartsInFlight <= 0 {
		cfg.PartsInFlight = DefaultPartsInFlight
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	client := cfg.HTTPClient
	if client == nil {
		tc := &tls.Config{}
		if ep.Scheme == "https" {
			if cfg.CABundle == "" {
				cfg.CABundle = firstOf(env("AWS_CA_BUNDLE"), prof.CABundle)
			}
			trust := "file=" + env("SSL_CERT_FILE") + " dir=" + env("SSL_CERT_DIR")
			if cfg.CABundle != "" {
				if tc.RootCAs, err = loadCABundle(cfg.CABundle); err != nil {
					return nil, err
				}
				trust = "bundle=" + cfg.CABundle
			}
			if cfg.TLSSessionDir != "" {
				c, err := newSessionCache(cfg.TLSSessionDir, trust)
				if err != nil {
					cfg.Logger.Warn("TLS sessions are not kept between calls: each one makes a full handshake", "err", err)
				} else {
					tc.ClientSessionCache = c
				}
			}
		}
		client = newHTTPClient(cfg.Timeout, tc)
	}
	s := &Storage{
		cfg:      cfg,
		name:     archive.URL{Scheme: "s3", Host: cfg.Bucket, Path: cfg.Prefix}.String(),
		endpoint: &url.URL{Scheme: ep.Scheme, Host: ep.Host},
		sign:     signer{region: cfg.Region, now: time.Now},
		client:   client,
		creds: &credentialChain{env: env, profile: prof,
			client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}},
	}
	if cfg.Prefix != "" {
		s.root = cfg.Prefix + "/"
	}
	if ep.Scheme == "http" && !isLoopback(ep.Hostname()) {
		cfg.Logger.Warn("the S3 endpoint is plain http: credentials are signed, but WAL travels unencrypted", "endpoint", cfg.Endpoint)
	}
	return s, nil
}

// newHTTPClient returns the client of a Storage: connections kept for
// reuse, every wait bounded by timeout.
func newHTTPClient(timeout time.Duration, tc *tls.Config) *http.Client {
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if tc.ClientSessionCache == nil {
		tc.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	}
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:       tc,
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
			ExpectContinueTimeout: time.Second,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		},
		// S3 redirects only to another region: report it, do not follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// String returns the archive's URL.
func (s *Storage) String() string { return s.name }

// Close releases idle connections.
func (s *Storage) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

// key returns the object key of an archive name.
func (s *Storage) key(name string) string { return s.root + name }

// dirKey returns the key prefix of the files in dir ("" is the root).
func (s *Storage) dirKey(dir string) string {
	if dir == "" {
		return s.root
	}
	return s.root + dir + "/"
}

func (s *Storage) lastKeyID() string {
	if c := s.lastCreds.Load(); c != nil {
		return c.AccessKeyID
	}
	return "(none)"
}

func (s *Storage) lastSource() string {
	if c := s.lastCreds.Load(); c != nil {
		return c.Source
	}
	return "nowhere"
}

// request is one S3 request.
type request struct {
	method string
	key    string // object key; "" addresses the bucket
	query  url.Values
	header http.Header
	body   []byte // sent as it is; nil for no body
	// payloadHash is the body's hex SHA-256, or unsignedPayload when the
	// body carries a checksum header of its own.
	payloadHash string
}

// send makes one request and returns the answer when its status is 2xx,
// an *Error otherwise, with the body read and closed. stream, when set,
// leaves a 2xx body open for the caller; it must close it.
func (s *Storage) send(ctx context.Context, op string, r request, stream bool) (*http.Response, error) {
	cr, err := s.creds.get(ctx)
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", op, err)
	}
	s.lastCreds.Store(&cr)
	u := *s.endpoint
	p := "/"
	if s.cfg.PathStyle {
		p += s.cfg.Bucket
		if r.key != "" {
			p += "/"
		}
	} else {
		u.Host = s.cfg.Bucket + "." + u.Host
	}
	p += r.key
	u.Path, u.RawPath = p, encodePath(p)
	if len(r.query) > 0 {
		u.RawQuery = encodeQuery(r.query)
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", op, err)
	}
	req.URL.RawPath = u.RawPath // keep S3's encoding, which signing used
	for k, v := range r.header {
		req.Header[k] = v
	}
	if r.body != nil {
		req.ContentLength = int64(len(r.body))
		req.Header.Set("Content-Length", fmt.Sprint(len(r.body)))
	}
	ph := r.payloadHash
	if ph == "" {
		ph = emptySHA256
		if len(r.body) > 0 {
			ph = hexSHA256(r.body)
		}
	}
	s.sign.sign(req, cr, ph)
	req.Header.Del("Content-Length") // set by the transport from ContentLength
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, s.transportError(ctx, op, err)
	}
	if resp.StatusCode/100 == 2 {
		// Any success in the bucket shows it exists, as the answer
		// NoSuchKey does (apiError): a later HEAD answered 404 is then a
		// missing key, without the listing checkBucket would make.
		s.bucketOK.Store(true)
		if stream {
			return resp, nil
		}
	}
	b, rerr := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	resp.Body.Close()
	if rerr != nil {
		return nil, s.transportError(ctx, op, rerr)
	}
	if resp.StatusCode/100 != 2 {
		return nil, s.apiError(op, resp, b)
	}
	// CompleteMultipartUpload (and CopyObject) may fail with status 200.
	if bytes.Contains(b[:min(len(b), 512)], []byte("<Error>")) {
		resp.StatusCode = http.StatusInternalServerError
		return nil, s.apiError(op, resp, b)
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

// call is send with the Storage's timeout on the whole request, for
// requests whose answer is small. The error of an answer without a body
// (to HEAD) is diagnosed with a listing, which has one.
func (s *Storage) call(ctx context.Context, op string, r request) (*http.Response, error) {
	tctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	resp, err := s.send(tctx, op, r, false)
	if err != nil && ctx.Err() == nil && tctx.Err() != nil {
		return nil, s.timeoutError(op)
	}
	var e *Error
	if errors.As(err, &e) && e.Code == "" && r.method == http.MethodHead && e.Status != http.StatusNotFound {
		if derr := s.diagnose(ctx, op); derr != nil {
			return nil, derr
		}
	}
	return resp, err
}

// diagnose lists the bucket (no keys) to learn why a bodiless answer
// failed: bad credentials, a wrong region or a missing bucket say so in
// the listing's answer. It returns that error, or nil when the listing
// works.
func (s *Storage) diagnose(ctx context.Context, op string) error {
	tctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	_, err := s.send(tctx, op, request{method: http.MethodGet, query: url.Values{"list-type": {"2"}, "max-keys": {"0"}}}, false)
	if err != nil && ctx.Err() == nil && tctx.Err() != nil {
		return s.timeoutError(op)
	}
	return err
}

// checkBucket makes sure the bucket exists, once per Storage, so that a
// HEAD answer 404 can be read as a missing key.
func (s *Storage) checkBucket(ctx context.Context) error {
	if s.bucketOK.Load() {
		return nil
	}
	s.bucketMu.Lock()
	defer s.bucketMu.Unlock()
	if s.bucketOK.Load() {
		return nil
	}
	if err := s.diagnose(ctx, "check bucket "+s.cfg.Bucket); err != nil {
		return err
	}
	s.bucketOK.Store(true)
	return nil
}

// head describes one key; a missing one matches fs.ErrNotExist, once the
// bucket is known to exist.
func (s *Storage) head(ctx context.Context, op, key string) (*http.Response, error) {
	resp, err := s.call(ctx, op, request{method: http.MethodHead, key: key})
	var e *Error
	if errors.As(err, &e) && e.Status == http.StatusNotFound {
		if berr := s.checkBucket(ctx); berr != nil {
			return nil, berr
		}
		e.Code = "NoSuchKey"
		return nil, e
	}
	return resp, err
}

// Stat describes name; see archive.Storage. Its Mode is zero: S3 keeps no
// permission bits.
func (s *Storage) Stat(ctx context.Context, name string) (archive.FileInfo, error) {
	if err := archive.ValidName(name); err != nil {
		return archive.FileInfo{}, err
	}
	resp, err := s.head(ctx, "stat "+name, s.key(name))
	if err != nil {
		return archive.FileInfo{}, err
	}
	mod, _ := http.ParseTime(resp.Header.Get("Last-Modified"))
	return archive.FileInfo{Name: path.Base(name), Size: resp.ContentLength, ModTime: mod}, nil
}

// Open opens name for reading; see archive.Storage. Each Read of the body
// must make progress within the timeout.
func (s *Storage) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := archive.ValidName(name); err != nil {
		return nil, err
	}
	op := "get " + name
	rctx, cancel := context.WithCancel(ctx)
	w := time.AfterFunc(s.cfg.Timeout, cancel)
	resp, err := s.send(rctx, op, request{method: http.MethodGet, key: s.key(name)}, true)
	if err != nil {
		timedOut := !w.Stop() && ctx.Err() == nil
		cancel()
		if timedOut {
			return nil, s.timeoutError(op)
		}
		return nil, err
	}
	w.Reset(s.cfg.Timeout)
	return &body{s: s, op: op, ctx: ctx, rc: resp.Body, cancel: cancel, watchdog: w, size: resp.ContentLength}, nil
}

func (s *Storage) timeoutError(op string) error {
	return &netError{op: op, host: s.endpoint.Host, err: fmt.Errorf("no answer within %v", s.cfg.Timeout),
		hint: "the S3 server is unreachable or overloaded; the call is retried (raise --s3-timeout for a slow link)"}
}

// body is an open object. A read that stalls longer than the timeout
// fails with an error matching archive.ErrUnavailable; one that ends short
// of Content-Length too.
type body struct {
	s        *Storage
	op       string
	ctx      context.Context
	rc       io.ReadCloser
	cancel   context.CancelFunc
	watchdog *time.Timer
	size     int64
	n        int64
}

func (b *body) Read(p []byte) (int, error) {
	b.watchdog.Reset(b.s.cfg.Timeout)
	n, err := b.rc.Read(p)
	b.n += int64(n)
	switch {
	case err == io.EOF && b.size >= 0 && b.n != b.size:
		return n, &netError{op: b.op, host: b.s.endpoint.Host, err: fmt.Errorf("got %d of %d bytes", b.n, b.size),
			hint: "the connection broke; the call is retried"}
	case err != nil && err != io.EOF:
		if b.ctx.Err() != nil {
			return n, b.ctx.Err()
		}
		if errors.Is(err, context.Canceled) {
			return n, b.s.timeoutError(b.op)
		}
		return n, b.s.transportError(b.ctx, b.op, err)
	}
	return n, err
}

func (b *body) Close() error {
	b.watchdog.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}

// Remove deletes name; see archive.Storage. S3 deletes a missing key
// without complaint, so Remove looks first. A directory is its marker
// (see the package comment): Remove deletes it when no file is left below.
func (s *Storage) Remove(ctx context.Context, name string) error {
	if err := archive.ValidName(name); err != nil {
		return err
	}
	op := "remove " + name
	_, err := s.head(ctx, op, s.key(name))
	if err == nil {
		return s.deleteKey(ctx, op, s.key(name))
	}
	if !archive.IsNotExist(err) {
		return err
	}
	// Not a file: a directory, if anything lies below it.
	below, err := s.listKeys(ctx, op, s.key(name)+"/", 2)
	if err != nil {
		return err
	}
	marker := false
	for _, k := range below {
		if k == s.key(name)+"/" {
			marker = true
			continue
		}
		return &fs.PathError{Op: "remove", Path: s.name + "/" + name, Err: errors.New("directory not empty")}
	}
	if !marker {
		return &fs.PathError{Op: "remove", Path: s.name + "/" + name, Err: fs.ErrNotExist}
	}
	s.dirs.Delete(name)
	return s.deleteKey(ctx, op, s.key(name)+"/")
}

func (s *Storage) deleteKey(ctx context.Context, op, key string) error {
	_, err := s.call(ctx, op, request{method: http.MethodDelete, key: key})
	return err
}

// loadCABundle reads the certificate authorities of a CA bundle file.
func loadCABundle(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("s3: read the CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("s3: CA bundle %s holds no PEM certificate", file)
	}
	return pool, nil
}
