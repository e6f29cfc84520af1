package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/archivetest"
	"github.com/walship/walship/archive/s3"
	"github.com/walship/walship/archive/s3/s3test"
)

// env is the environment a test Storage sees: the server's credentials
// and nothing of the machine's.
func env(vars map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		switch k {
		case "AWS_ACCESS_KEY_ID":
			return s3test.AccessKey
		case "AWS_SECRET_ACCESS_KEY":
			return s3test.SecretKey
		case "AWS_EC2_METADATA_DISABLED":
			return "true"
		case "HOME":
			return "/nonexistent"
		}
		return ""
	}
}

var buckets atomic.Int64

// config returns a Config for a new, empty archive on srv, in a bucket of
// its own under a prefix.
func config(t *testing.T, srv *s3test.Server) s3.Config {
	t.Helper()
	b := srv.Bucket(t, fmt.Sprintf("bucket-%d", buckets.Add(1)))
	return s3.Config{Bucket: b, Prefix: "cluster/main", Endpoint: srv.Endpoint, PathStyle: true,
		Timeout: 10 * time.Second, Getenv: env(nil)}
}

func open(t *testing.T, cfg s3.Config) *s3.Storage {
	t.Helper()
	s, err := s3.New(cfg)
	if err != nil {
		t.Fatalf("New: got %v, want nil", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	archivetest.Run(t, func(t *testing.T) archive.Storage { return open(t, config(t, srv)) })
}

// TestConformanceBucketRoot runs the suite on an archive that is a whole
// bucket, without prefix.
func TestConformanceBucketRoot(t *testing.T) {
	srv := s3test.Start(t)
	archivetest.Run(t, func(t *testing.T) archive.Storage {
		cfg := config(t, srv)
		cfg.Prefix = ""
		return open(t, cfg)
	})
}

// checkNotMissing fails the test when err could read as a missing file.
func checkNotMissing(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: got nil, want an error", what)
		return
	}
	if errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: got %v, which matches fs.ErrNotExist; a server or setup problem must never read as a missing file", what, err)
	}
}

// calls makes every call that reads the archive, and returns their errors.
func calls(ctx context.Context, s archive.Storage) map[string]error {
	errs := map[string]error{}
	_, errs["stat"] = s.Stat(ctx, "wal/000000010000000000000001.zst")
	rc, err := s.Open(ctx, "wal/000000010000000000000001.zst")
	if err == nil {
		rc.Close()
	}
	errs["open"] = err
	_, errs["list"] = s.List(ctx, "wal")
	errs["put"] = s.Put(ctx, "wal/x", strings.NewReader("x"))
	errs["remove"] = s.Remove(ctx, "wal/x")
	return errs
}

// TestErrors checks each setup mistake: an error that names the fix, that
// is never "not found", and that matches its sentinel.
func TestErrors(t *testing.T) {
	srv := s3test.Start(t)
	for _, tt := range []struct {
		name     string
		cfg      func(s3.Config) s3.Config
		sentinel error
		want     string
	}{
		{"missing bucket", func(c s3.Config) s3.Config { c.Bucket = "no-such-bucket"; return c },
			s3.ErrNoBucket, `bucket "no-such-bucket" does not exist`},
		{"unknown access key", func(c s3.Config) s3.Config {
			c.Getenv = env(map[string]string{"AWS_ACCESS_KEY_ID": "AKIAUNKNOWN"})
			return c
		}, s3.ErrBadCredentials, "does not know access key AKIAUNKNOWN (from environment): fix AWS_ACCESS_KEY_ID"},
		{"wrong secret", func(c s3.Config) s3.Config {
			c.Getenv = env(map[string]string{"AWS_SECRET_ACCESS_KEY": "wrong"})
			return c
		}, s3.ErrBadCredentials, "fix AWS_SECRET_ACCESS_KEY"},
		{"wrong region", func(c s3.Config) s3.Config { c.Region = "eu-west-3"; return c },
			s3.ErrWrongRegion, "--s3-region"},
		{"tls to a plain server", func(c s3.Config) s3.Config {
			c.Endpoint = strings.Replace(c.Endpoint, "http://", "https://", 1)
			return c
		}, s3.ErrTLS, "http://"},
		{"nothing listening", func(c s3.Config) s3.Config { c.Endpoint = "http://127.0.0.1:1"; return c },
			archive.ErrUnavailable, "connection refused: is the S3 server running"},
		{"untrusted certificate", func(c s3.Config) s3.Config {
			ts := httptest.NewTLSServer(http.NotFoundHandler())
			t.Cleanup(ts.Close)
			c.Endpoint = ts.URL
			return c
		}, s3.ErrTLS, "at the CA that signed the server's certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, tt.cfg(config(t, srv)))
			for op, err := range calls(t.Context(), s) {
				checkNotMissing(t, op, err)
				if !errors.Is(err, tt.sentinel) {
					t.Errorf("%s: got %v, want an error matching %v", op, err, tt.sentinel)
				}
				if err != nil && !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s: got %q, want it to contain %q", op, err, tt.want)
				}
				if err != nil && strings.Contains(err.Error(), "\n") {
					t.Errorf("%s: got %q, want one line", op, err)
				}
			}
		})
	}
}

// TestNoCredentials checks the message when the chain finds nothing.
func TestNoCredentials(t *testing.T) {
	srv := s3test.Start(t)
	cfg := config(t, srv)
	cfg.Getenv = env(map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
	s := open(t, cfg)
	_, err := s.Stat(t.Context(), "walship.json")
	checkNotMissing(t, "stat", err)
	if !errors.Is(err, s3.ErrNoCredentials) {
		t.Errorf("stat: got %v, want s3.ErrNoCredentials", err)
	}
}

// TestSharedFiles checks that the profile of ~/.aws/credentials and the
// region and endpoint of ~/.aws/config are used.
func TestSharedFiles(t *testing.T) {
	srv := s3test.Start(t)
	cfg := config(t, srv)
	home := t.TempDir()
	write := func(name, content string) {
		if err := os.MkdirAll(filepath.Join(home, ".aws"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, ".aws", name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("credentials", "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[archive]\n"+
		"aws_access_key_id = "+s3test.AccessKey+"\naws_secret_access_key="+s3test.SecretKey+"\n")
	write("config", "[profile archive]\nregion = "+s3test.Region+"\nendpoint_url = "+srv.Endpoint+"\ns3 =\n  addressing_style = path\n")
	cfg.Endpoint = ""
	cfg.Getenv = env(map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "HOME": home, "AWS_PROFILE": "archive"})
	s := open(t, cfg)
	if err := s.Put(t.Context(), "walship.json", strings.NewReader("{}")); err != nil {
		t.Fatalf("Put with the credentials of profile archive: got %v, want nil", err)
	}
}

// TestOutage checks that a stopped server is an error that Retry retries,
// never "not found", and that the same Storage works once it is back.
func TestOutage(t *testing.T) {
	srv := s3test.Start(t)
	cfg := config(t, srv)
	s := open(t, cfg)
	ctx := t.Context()
	if err := s.Put(ctx, "wal/a", strings.NewReader("a")); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)
	for op, err := range calls(ctx, s) {
		checkNotMissing(t, op, err)
		if !errors.Is(err, archive.ErrUnavailable) {
			t.Errorf("%s while the server is down: got %v, want an error matching archive.ErrUnavailable", op, err)
		}
	}
	srv.Restart(t)
	rc, err := s.Open(ctx, "wal/a")
	if err != nil {
		t.Fatalf("Open after the server came back: got %v, want nil", err)
	}
	rc.Close()
}

// TestTimeout checks that a server that accepts connections but does not
// answer is given up after the timeout, as unavailable, not missing.
func TestTimeout(t *testing.T) {
	srv := s3test.Start(t)
	cfg := config(t, srv)
	hang := s3test.Hang(t)
	cfg.Endpoint = hang
	cfg.Timeout = 300 * time.Millisecond
	s := open(t, cfg)
	start := time.Now()
	for op, err := range calls(t.Context(), s) {
		checkNotMissing(t, op, err)
		if !errors.Is(err, archive.ErrUnavailable) || !strings.Contains(fmt.Sprint(err), "no answer within 300ms") {
			t.Errorf("%s against a server that does not answer: got %v, want a timeout matching archive.ErrUnavailable", op, err)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("5 calls took %v, want each bounded by the 300ms timeout", d)
	}
}

// TestWaitingStandbyNeverPromotes is what matters to a standby whose
// restore_command waits: through Retry, a missing file is "not found",
// and a server that is down is an error however often it is asked.
func TestWaitingStandbyNeverPromotes(t *testing.T) {
	srv := s3test.Start(t)
	s := archive.Retry(open(t, config(t, srv)), archive.RetryPolicy{Attempts: 2, Backoff: time.Millisecond})
	ctx := t.Context()
	if _, err := s.Stat(ctx, "wal/000000010000000000000002.zst"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat of a missing segment: got %v, want fs.ErrNotExist", err)
	}
	srv.Stop(t)
	for i := range 3 {
		_, err := s.Stat(ctx, "wal/000000010000000000000002.zst")
		checkNotMissing(t, fmt.Sprintf("Stat %d while the server is down", i), err)
	}
}

// TestMultipartBoundedMemory puts a file of many parts from a reader of
// unknown length, and reads it back.
func TestMultipartBoundedMemory(t *testing.T) {
	srv := s3test.Start(t)
	cfg := config(t, srv)
	cfg.PartSize = 5 << 20
	s := open(t, cfg)
	const size = 23<<20 + 12345
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	if err := s.Put(t.Context(), "backups/x/base.tar.zst", io.MultiReader(bytes.NewReader(data[:1000]), bytes.NewReader(data[1000:]))); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Open(t.Context(), "backups/x/base.tar.zst")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, %v; want the %d bytes put", len(got), err, size)
	}
	// Exactly one part's worth: one PutObject, no upload.
	exact := data[:5<<20]
	if err := s.Put(t.Context(), "wal/exact", bytes.NewReader(exact)); err != nil {
		t.Fatal(err)
	}
	if fi, err := s.Stat(t.Context(), "wal/exact"); err != nil || fi.Size != int64(len(exact)) {
		t.Fatalf("Stat: got %+v, %v; want %d bytes", fi, err, len(exact))
	}
	if temps, err := s.ListTemp(t.Context(), ""); err != nil || len(temps) != 0 {
		t.Errorf("ListTemp after complete uploads: got %v, %v; want none", temps, err)
	}
}

// stalling returns n bytes of data, then blocks until release is closed,
// then fails with errStalled.
type stalling struct {
	data    []byte
	stalled chan struct{}
	release chan struct{}
}

var errStalled = errors.New("reader failed after stalling")

func (r *stalling) Read(p []byte) (int, error) {
	if len(r.data) > 0 {
		n := copy(p, r.data)
		r.data = r.data[n:]
		return n, nil
	}
	close(r.stalled)
	<-r.release
	return 0, errStalled
}

// TestMultipartTemp checks a large Put in progress: its upload is listed
// as a temporary file, with the bytes of its parts, while nothing is
// listed under its name; RemoveTemp aborts it, which fails the Put.
func TestMultipartTemp(t *testing.T) {
	srv := s3test.Start(t)
	cfg := config(t, srv)
	cfg.PartSize = 5 << 20
	s := open(t, cfg)
	ctx := t.Context()
	r := &stalling{data: make([]byte, 11<<20), stalled: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- s.Put(ctx, "backups/20261122T000000Z/base.tar.zst", r) }()
	<-r.stalled
	var temps []archive.TempFile
	deadline := time.Now().Add(10 * time.Second)
	for { // the two full parts may still be on their way
		var err error
		temps, err = s.ListTemp(ctx, "backups")
		if err != nil {
			t.Fatal(err)
		}
		if len(temps) == 1 && temps[0].Size == 10<<20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(temps) != 1 || temps[0].Dir != "backups/20261122T000000Z" || !strings.HasPrefix(temps[0].Name, ".base.tar.zst.tmp.") ||
		temps[0].Size != 10<<20 || !archive.IsTempName(temps[0].Name) {
		t.Fatalf("ListTemp during a multipart Put: got %+v, want the upload with its two 5 MiB parts", temps)
	}
	if list, err := s.List(ctx, "backups/20261122T000000Z"); err != nil || len(list) != 0 {
		t.Errorf("List during the upload: got %v, %v; want nothing", list, err)
	}
	if err := s.RemoveTemp(ctx, temps[0].Dir, temps[0].Name); err != nil {
		t.Fatalf("RemoveTemp: got %v, want nil", err)
	}
	if err := s.RemoveTemp(ctx, temps[0].Dir, temps[0].Name); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second RemoveTemp: got %v, want fs.ErrNotExist", err)
	}
	close(r.release)
	if err := <-done; err == nil {
		t.Errorf("Put whose upload was aborted: got nil, want an error")
	}
	if temps, err := s.ListTemp(ctx, ""); err != nil || len(temps) != 0 {
		t.Errorf("ListTemp at the end: got %v, %v; want nothing", temps, err)
	}
	if _, err := s.Stat(ctx, "backups/20261122T000000Z/base.tar.zst"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of the aborted file: got %v, want fs.ErrNotExist", err)
	}
}

// TestMultipartRace races large Puts of one name: exactly one completes,
// the others fail with fs.ErrExist and leave no upload behind.
func TestMultipartRace(t *testing.T) {
	srv := s3test.Start(t)
	cfg := config(t, srv)
	cfg.PartSize = 5 << 20
	s := open(t, cfg)
	const n = 3
	errs := make(chan error, n)
	for i := range n {
		data := bytes.Repeat([]byte{byte(i)}, 12<<20)
		go func() { errs <- s.Put(t.Context(), "wal/big", bytes.NewReader(data)) }()
	}
	won := 0
	for range n {
		err := <-errs
		switch {
		case err == nil:
			won++
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("Put: got %v, want nil or fs.ErrExist", err)
		}
	}
	if won != 1 {
		t.Errorf("%d Puts succeeded, want exactly one", won)
	}
	if temps, err := s.ListTemp(t.Context(), ""); err != nil || len(temps) != 0 {
		t.Errorf("ListTemp after the race: got %v, %v; want nothing", temps, err)
	}
}

// TestListDirs checks the directories of a bucket shared by clusters, as
// a repository lists them.
func TestListDirs(t *testing.T) {
	srv := s3test.Start(t)
	cfg := config(t, srv)
	cfg.Prefix = ""
	s := open(t, cfg)
	for _, name := range []string{"main/walship.json", "main/wal/a", "other/walship.json", "top"} {
		if err := s.Put(t.Context(), name, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ListDirs(t.Context(), "")
	if err != nil || strings.Join(got, ",") != "main,other" {
		t.Errorf("ListDirs(\"\"): got %q, %v; want main, other", got, err)
	}
	got, err = s.ListDirs(t.Context(), "main")
	if err != nil || strings.Join(got, ",") != "wal" {
		t.Errorf("ListDirs(\"main\"): got %q, %v; want wal", got, err)
	}
	if got, err := s.ListDirs(t.Context(), "nope"); err != nil || len(got) != 0 {
		t.Errorf("ListDirs of a missing dir: got %q, %v; want nothing", got, err)
	}
	clusters, err := archive.ListClusters(t.Context(), archive.Retry(s, archive.RetryPolicy{}))
	if err != nil || strings.Join(clusters, ",") != "main,other" {
		t.Errorf("ListClusters: got %q, %v; want main, other", clusters, err)
	}
}
