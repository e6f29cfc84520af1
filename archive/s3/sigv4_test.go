package s3

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSignAWSExample signs the GET Object example of the S3 SigV4
// documentation ("Example: GET Object") and compares with its signature.
func TestSignAWSExample(t *testing.T) {
	req, err := http.NewRequest("GET", "https://examplebucket.s3.amazonaws.com/test.txt", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Range", "bytes=0-9")
	s := signer{region: "us-east-1", now: func() time.Time { return time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC) }}
	s.sign(req, credentials{AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}, emptySHA256)
	want := "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, " +
		"SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, " +
		"Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
	if got := req.Header.Get("Authorization"); got != want {
		t.Errorf("Authorization:\n got %s\nwant %s", got, want)
	}
}

// TestSignListExample signs the "GET Bucket (List Objects)" example, which
// has a query string.
func TestSignListExample(t *testing.T) {
	req, err := http.NewRequest("GET", "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := signer{region: "us-east-1", now: func() time.Time { return time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC) }}
	s.sign(req, credentials{AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}, emptySHA256)
	want := "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
	if got := req.Header.Get("Authorization"); !strings.HasSuffix(got, want) {
		t.Errorf("Authorization: got %s, want it to end in %s", got, want)
	}
}

func TestURIEncode(t *testing.T) {
	for _, tt := range []struct{ in, path, query string }{
		{"wal/0000000100000000000000A1.zst", "wal/0000000100000000000000A1.zst", "wal%2F0000000100000000000000A1.zst"},
		{"a b+c=d~e", "a%20b%2Bc%3Dd~e", "a%20b%2Bc%3Dd~e"},
		{"\u00e9", "%C3%A9", "%C3%A9"},
	} {
		if got := uriEncode(tt.in, false); got != tt.path {
			t.Errorf("uriEncode(%q, false): got %q, want %q", tt.in, got, tt.path)
		}
		if got := uriEncode(tt.in, true); got != tt.query {
			t.Errorf("uriEncode(%q, true): got %q, want %q", tt.in, got, tt.query)
		}
	}
}
