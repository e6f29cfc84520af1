package s3

import (
	"context"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/walship/walship/archive"
)

// Sentinel errors for the answers that need the user, matched with
// errors.Is; each error's message names the fix.
var (
	ErrBadCredentials = errors.New("S3 credentials refused")
	ErrNoBucket       = errors.New("S3 bucket does not exist")
	ErrWrongRegion    = errors.New("S3 bucket is in another region")
	ErrAccessDenied   = errors.New("S3 access denied")
	ErrTLS            = errors.New("S3 TLS failure")
)

// errorBody is the XML error document of S3.
type errorBody struct {
	Code     string
	Message  string
	Region   string
	Endpoint string
	Bucket   string `xml:"BucketName"`
}

// Error is an error answer of the S3 server. It matches fs.ErrNotExist for
// a missing object only (NoSuchKey, NoSuchUpload), never for a missing
// bucket; it matches archive.ErrUnavailable when asking again may help
// (server errors, throttling, conflicting requests in progress); it
// matches one of the sentinel errors when the user must act.
type Error struct {
	Op     string // what walship asked, "get wal/…"
	Status int
	errorBody
	// hint says what to do; sentinel is the matching error.
	hint     string
	sentinel error
}

func (e *Error) Error() string {
	code := e.Code
	if code == "" {
		code = http.StatusText(e.Status)
	}
	msg := fmt.Sprintf("s3 %s: %d %s", e.Op, e.Status, code)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.hint != "" {
		msg += ": " + e.hint
	}
	return msg
}

func (e *Error) Is(target error) bool {
	switch target {
	case fs.ErrNotExist:
		return e.Status == http.StatusNotFound && (e.Code == "NoSuchKey" || e.Code == "NoSuchUpload")
	case fs.ErrExist:
		return e.Status == http.StatusPreconditionFailed
	case archive.ErrUnavailable:
		return e.retryable()
	}
	return e.sentinel != nil && target == e.sentinel
}

func (e *Error) retryable() bool {
	switch {
	case e.Status >= 500, e.Status == http.StatusTooManyRequests, e.Status == http.StatusRequestTimeout:
		return true
	case e.Code == "SlowDown", e.Code == "RequestTimeout", e.Code == "InternalError", e.Code == "ConditionalRequestConflict":
		return true
	}
	return false
}

// apiError builds the error of an answer with status and body b, as
// asked by op of the Storage s.
func (s *Storage) apiError(op string, resp *http.Response, b []byte) *Error {
	e := &Error{Op: op, Status: resp.StatusCode}
	if len(b) > 0 {
		_ = xml.Unmarshal(b, &e.errorBody)
	}
	if e.Code == "" && resp.StatusCode == http.StatusNotFound && resp.Request.Method == http.MethodHead {
		// A HEAD answer has no body: the caller tells key from bucket.
		e.Code = "NotFound"
	}
	bucketRegion := resp.Header.Get("X-Amz-Bucket-Region")
	if bucketRegion == "" {
		bucketRegion = e.Region
	}
	switch {
	case e.Code == "NoSuchKey":
		s.bucketOK.Store(true) // only an existing bucket lacks a key
	case e.Code == "InvalidAccessKeyId" || e.Code == "XAdminUserNotFound":
		e.sentinel = ErrBadCredentials
		e.hint = fmt.Sprintf("the server does not know access key %s (from %s): fix AWS_ACCESS_KEY_ID or the profile's aws_access_key_id",
			s.lastKeyID(), s.lastSource())
	case e.Code == "SignatureDoesNotMatch":
		e.sentinel = ErrBadCredentials
		e.hint = fmt.Sprintf("the secret key does not match access key %s (from %s): fix AWS_SECRET_ACCESS_KEY or the profile's aws_secret_access_key",
			s.lastKeyID(), s.lastSource())
	case e.Code == "ExpiredToken" || e.Code == "InvalidToken" || e.Code == "TokenRefreshRequired":
		e.sentinel = ErrBadCredentials
		e.hint = "the session token expired or is invalid: renew the temporary credentials (AWS_SESSION_TOKEN)"
	case e.Code == "NoSuchBucket":
		e.sentinel = ErrNoBucket
		e.hint = fmt.Sprintf("bucket %q does not exist at %s: create it, or fix the bucket in --archive (or --s3-endpoint)", s.cfg.Bucket, s.endpoint.Host)
	case e.Code == "PermanentRedirect" || e.Code == "AuthorizationHeaderMalformed" && bucketRegion != "" ||
		resp.StatusCode == http.StatusMovedPermanently || e.Code == "IllegalLocationConstraintException":
		e.sentinel = ErrWrongRegion
		if bucketRegion != "" {
			e.hint = fmt.Sprintf("bucket %q is in region %s, not %s: set --s3-region %s (or AWS_REGION)", s.cfg.Bucket, bucketRegion, s.cfg.Region, bucketRegion)
		} else {
			e.hint = fmt.Sprintf("bucket %q is not in region %s: set --s3-region (or AWS_REGION) to the bucket's region", s.cfg.Bucket, s.cfg.Region)
		}
	case e.Code == "AccessDenied" || resp.StatusCode == http.StatusForbidden:
		e.sentinel = ErrAccessDenied
		e.hint = fmt.Sprintf("access key %s (from %s) may not do this: grant it the actions of the bucket policy in walship's README "+
			"(s3:GetObject, s3:PutObject, s3:DeleteObject, s3:ListBucket, s3:ListBucketMultipartUploads, s3:AbortMultipartUpload) on %s",
			s.lastKeyID(), s.lastSource(), s.name)
	case e.Code == "RequestTimeTooSkewed":
		e.hint = "this machine's clock is off by more than 15 minutes: fix it (timedatectl, chrony)"
	case e.Code == "NotImplemented":
		e.hint = "the server does not implement this request"
	}
	return e
}

// netError is a failure to reach the server. It matches
// archive.ErrUnavailable, except for TLS failures, which asking again does
// not cure.
type netError struct {
	op   string
	host string
	err  error
	hint string
	tls  bool
}

func (e *netError) Error() string {
	return fmt.Sprintf("s3 %s: %s: %v: %s", e.op, e.host, e.err, e.hint)
}

func (e *netError) Unwrap() error { return e.err }

func (e *netError) Is(target error) bool {
	switch target {
	case archive.ErrUnavailable:
		return !e.tls
	case ErrTLS:
		return e.tls
	case fs.ErrNotExist:
		return false // never: an unreachable server is not a missing file
	}
	return false
}

// transportError sorts a failure of the HTTP client, one that got no
// answer. ctx is the caller's: when it is done, its error is returned.
func (s *Storage) transportError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("s3 %s: %w", op, ctx.Err())
	}
	e := &netError{op: op, host: s.endpoint.Host, err: err}
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var dnsErr *net.DNSError
	switch {
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		e.tls = true
		e.hint = "the server speaks plain HTTP, not TLS: write the endpoint as http://…"
	case errors.As(err, &unknownAuthority) || errors.As(err, &invalid) || errors.As(err, &hostname) ||
		strings.Contains(err.Error(), "tls: ") || strings.Contains(err.Error(), "x509: "):
		e.tls = true
		e.hint = "TLS failed: point --s3-ca-bundle (or AWS_CA_BUNDLE) at the CA that signed the server's certificate, " +
			"or install it in the system trust store, and check that --s3-endpoint names the host the certificate is for"
	case errors.Is(err, syscall.ECONNREFUSED):
		e.hint = "is the S3 server running, and does --s3-endpoint (or AWS_ENDPOINT_URL) name its address and port?"
	case errors.As(err, &dnsErr):
		e.hint = "cannot resolve the host name: check --s3-endpoint (or AWS_ENDPOINT_URL) and DNS"
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		e.err = fmt.Errorf("no answer within %v", s.cfg.Timeout)
		e.hint = "the S3 server is unreachable or overloaded; the call is retried (raise --s3-timeout for a slow link)"
	default:
		e.hint = "the S3 server is unreachable; the call is retried"
	}
	return e
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
