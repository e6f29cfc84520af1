package main

import (
	"strings"
	"testing"
	"time"

	"github.com/walship/walship/archive/s3"
)

// TestS3Args checks that the S3 settings reach the commands walship writes
// or starts (restore_command, the prefetcher), and defaults stay out.
func TestS3Args(t *testing.T) {
	if got := sshArgs(sshOptions{S3: s3Options{Timeout: s3.DefaultTimeout}}); len(got) != 0 {
		t.Errorf("sshArgs with the S3 defaults: got %q, want nothing", got)
	}
	got := strings.Join(sshArgs(sshOptions{S3: s3Options{Endpoint: "http://127.0.0.1:7070", Region: "eu-west-3",
		PathStyle: true, Profile: "walship", CredentialsFile: "/etc/walship/aws", Timeout: 5 * time.Second,
		TLSSessions: "off", CABundle: "/etc/walship/ca.pem"}}), " ")
	want := "--s3-endpoint http://127.0.0.1:7070 --s3-region eu-west-3 --s3-profile walship " +
		"--s3-credentials-file /etc/walship/aws --s3-tls-sessions off --s3-ca-bundle /etc/walship/ca.pem --s3-path-style --s3-timeout 5s"
	if got != want {
		t.Errorf("sshArgs: got %q, want %q", got, want)
	}
}

// TestOpenS3 checks that an s3:// archive opens without a request, and
// that a bad endpoint is a usage error.
func TestOpenS3(t *testing.T) {
	st, err := openArchive(t.Context(), "s3://walship-test/main", sshOptions{S3: s3Options{Endpoint: "http://127.0.0.1:1"}})
	if err != nil {
		t.Fatalf("openArchive: got %v, want nil", err)
	}
	if got := st.String(); got != "s3://walship-test/main" {
		t.Errorf("String: got %q, want s3://walship-test/main", got)
	}
	st.Close()
	_, err = openArchive(t.Context(), "s3://walship-test/main", sshOptions{S3: s3Options{Endpoint: "ftp://x"}})
	if _, ok := err.(usageError); !ok {
		t.Errorf("openArchive with endpoint ftp://x: got %v, want a usage error", err)
	}
}
