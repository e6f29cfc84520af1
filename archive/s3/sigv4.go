package s3

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Values of the x-amz-content-sha256 header.
const (
	unsignedPayload = "UNSIGNED-PAYLOAD"
	emptySHA256     = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// signer signs requests with AWS Signature Version 4, as S3 wants it: the
// path encoded once, the payload hash in x-amz-content-sha256.
type signer struct {
	region string
	now    func() time.Time
}

// sign adds the x-amz-date, x-amz-content-sha256, x-amz-security-token and
// Authorization headers to req. payloadHash is the hex SHA-256 of the body,
// or unsignedPayload. req.URL.RawPath, when set, is the canonical path.
func (s signer) sign(req *http.Request, c credentials, payloadHash string) {
	t := s.now().UTC()
	date := t.Format("20060102")
	stamp := t.Format("20060102T150405Z")
	req.Header.Set("X-Amz-Date", stamp)
	req.Header.Set("X-Amz-Content-Sha256", payloadHash)
	if c.SessionToken != "" {
		req.Header.Set("X-Amz-Security-Token", c.SessionToken)
	}
	names, canonHeaders := canonicalHeaders(req)
	canon := strings.Join([]string{
		req.Method,
		canonicalPath(req.URL),
		canonicalQuery(req.URL.Query()),
		canonHeaders,
		names,
		payloadHash,
	}, "\n")
	scope := date + "/" + s.region + "/s3/aws4_request"
	toSign := "AWS4-HMAC-SHA256\n" + stamp + "\n" + scope + "\n" + hexSHA256([]byte(canon))
	key := hmacSHA256([]byte("AWS4"+c.SecretAccessKey), date)
	for _, part := range []string{s.region, "s3", "aws4_request"} {
		key = hmacSHA256(key, part)
	}
	sig := hex.EncodeToString(hmacSHA256(key, toSign))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+c.AccessKeyID+"/"+scope+
		", SignedHeaders="+names+", Signature="+sig)
}

// canonicalHeaders returns the signed header names and their canonical
// lines: host, and every header S3 checks (x-amz-*, content-*, range,
// conditions).
func canonicalHeaders(req *http.Request) (names, lines string) {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	vals := map[string]string{"host": host}
	for k, v := range req.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-amz-") || strings.HasPrefix(lk, "content-") || lk == "range" ||
			strings.HasPrefix(lk, "if-") {
			for i := range v {
				v[i] = strings.Join(strings.Fields(v[i]), " ")
			}
			vals[lk] = strings.Join(v, ",")
		}
	}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + ":" + vals[k] + "\n")
	}
	return strings.Join(keys, ";"), b.String()
}

// canonicalPath is the URI-encoded path, as sent.
func canonicalPath(u *url.URL) string {
	if u.RawPath != "" {
		return u.RawPath
	}
	if u.Path == "" {
		return "/"
	}
	return encodePath(u.Path)
}

// canonicalQuery sorts and encodes the query parameters.
func canonicalQuery(q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		vs := slices.Clone(q[k])
		slices.Sort(vs)
		for _, v := range vs {
			parts = append(parts, uriEncode(k, true)+"="+uriEncode(v, true))
		}
	}
	return strings.Join(parts, "&")
}

// encodePath encodes an object path as S3 signs it: every byte but the
// unreserved ones and "/".
func encodePath(p string) string { return uriEncode(p, false) }

// encodeQuery encodes a query string the way canonicalQuery signs it.
func encodeQuery(q url.Values) string { return canonicalQuery(q) }

// uriEncode is SigV4's UriEncode: unreserved characters stay, every other
// byte becomes %XX; "/" too when slash is set.
func uriEncode(s string, slash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '~', c == '/' && !slash:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func hexSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
