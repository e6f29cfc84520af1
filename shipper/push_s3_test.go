package shipper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/crypt"
	"github.com/walship/walship/archive/s3"
	"github.com/walship/walship/archive/s3/s3test"
)

// TestPushRequestsOnS3 counts the requests a push makes of a real S3
// server (versitygw), with the encryption layer every command has: on a
// real network each is a round trip, and each is paid for. A push of a new
// segment reads only what it must (the identity, the key sets, the names
// the segment may be archived under, the next timeline's history, the
// tail increments to remove) and writes the segment; a re-push reads the
// archived copy instead of writing. Both still refuse a conflict.
func TestPushRequestsOnS3(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "push-requests")
	env := map[string]string{"AWS_ACCESS_KEY_ID": s3test.AccessKey, "AWS_SECRET_ACCESS_KEY": s3test.SecretKey,
		"AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent"}
	dir := t.TempDir()
	// Each push is its own Storage, as each archive_command is its own process.
	push := func(path, name string) error {
		st, err := s3.New(s3.Config{Bucket: bucket, Prefix: "main", Endpoint: srv.Endpoint, PathStyle: true,
			Timeout: 10 * time.Second, Getenv: func(k string) string { return env[k] }})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		p := &Pusher{Storage: crypt.New(st, crypt.Config{}), Compression: archive.Zstd, SystemID: testSysID}
		return p.Push(context.Background(), path, name)
	}
	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	requests := func(what string, max int, fn func() error, wantErr error) {
		t.Helper()
		before := srv.Requests(t)
		err := fn()
		if !errors.Is(err, wantErr) {
			t.Fatalf("%s: got %v, want %v", what, err, wantErr)
		}
		got := srv.Requests(t) - before
		if got > max {
			t.Errorf("%s: %d requests, want at most %d", what, got, max)
		}
		t.Logf("%s: %d requests", what, got)
	}
	seg1, seg2 := segName(1, 1), segName(1, 2)
	requests("first push, which records the identity", 15, func() error {
		return push(file(seg1, fakeSegment(t, testSysID, 1, 1, 1)), seg1)
	}, nil)
	p2 := file(seg2, fakeSegment(t, testSysID, 1, 2, 2))
	// GET walship.json, LIST encryption/, 4 HEADs of the segment's names
	// (.zst, raw, .s2, the root),
	// HEAD wal/, PUT, 3 GETs of the next timeline's history, LIST of the
	// segment's tail increments; one more, a bucket listing, when a HEAD
	// answers 404 before any answer has shown the bucket exists. All but
	// the PUT and the last LIST go out at once. (Before: 15, one at a
	// time: the HEADs twice, and the bucket listing each time.)
	requests("push of a new segment", 13, func() error { return push(p2, seg2) }, nil)
	// LIST encryption/, GET walship.json, 4 HEADs, GET of the archived
	// copy to compare, LIST of tail increments (and the bucket listing).
	requests("identical re-push", 10, func() error { return push(p2, seg2) }, nil)
	other := file("other", fakeSegment(t, testSysID, 1, 2, 3))
	requests("re-push of different content", 9, func() error { return push(other, seg2) }, ErrConflict)
	if t.Failed() {
		fmt.Fprintln(os.Stderr, srv.Log())
	}
}
