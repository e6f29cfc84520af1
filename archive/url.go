package archive

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// URL names an archive: a local directory (also on NFS), a directory on an
// SFTP server, or a prefix of an S3 bucket. ParseURL builds one from what the user typed; String gives it
// back in a form ParseURL reads to the same URL.
//
// A URL holds no password on purpose: SFTP authentication goes through
// ssh-agent or an identity file, so no secret ends up in process listings,
// postgresql.conf or logs.
type URL struct {
	// Scheme is "file" for a local directory, "sftp", or "s3".
	Scheme string

	// User is the SSH login name; empty means the current user, as with ssh.
	User string

	// Host is the SFTP server's name or IP address, without brackets for
	// IPv6; for s3 URLs, the bucket. It is empty for file URLs.
	Host string

	// Port is the SFTP server's port; 0 means the default, 22.
	Port int

	// Path is the archive root. For file URLs it is an absolute, clean local
	// path. For sftp URLs it is an absolute, clean remote path, or a clean
	// path relative to the login directory ("." for the login directory
	// itself), which the URL spells "/~/path". For s3 URLs it is the key
	// prefix inside the bucket, clean, without leading or trailing slash,
	// "" for the whole bucket.
	Path string
}

// DefaultSFTPPort is the port an sftp URL without one connects to.
const DefaultSFTPPort = 22

// supportedForms ends the error messages about a malformed location, so the
// user sees what walship does accept.
const supportedForms = "use an absolute path (/srv/walship/main), file:///path, sftp://[user@]host[:port]/path or s3://bucket/prefix"

// ParseURL parses an archive location. It accepts:
//
//	/srv/walship/main                   a local directory (absolute path)
//	file:///srv/walship/main            the same, as a URL
//	sftp://user@host:2222/srv/walship   a directory on an SFTP server
//	sftp://host/srv/walship             the same, logging in as the current user
//	sftp://user@[::1]:2222/srv/walship  an IPv6 address goes in brackets
//	sftp://user@host/~/walship          relative to the login directory
//	s3://bucket/walship/main            a prefix of an S3 bucket
//	s3://bucket                         the whole bucket
//
// A plain path is taken literally: "?", "#" and "%" in it are part of the
// name. In a URL, the path after the host is absolute unless it starts with
// "/~/" (or is "/~"), which means relative to the login directory, as sftp(1)
// does; "%" escapes are decoded.
//
// ParseURL rejects relative paths (the working directory of archive_command
// is the data directory, rarely what was meant), unknown schemes, passwords,
// query strings and fragments (walship takes no URL options), ports outside
// 1-65535 and NUL bytes. Its errors never repeat a password.
func ParseURL(s string) (URL, error) {
	switch {
	case s == "":
		return URL{}, errors.New("empty archive location: " + supportedForms)
	case strings.IndexByte(s, 0) >= 0:
		return URL{}, errors.New("archive location contains a NUL byte")
	case strings.HasPrefix(s, "/"):
		return URL{Scheme: "file", Path: filepath.Clean(s)}, nil
	}
	scheme, rest, ok := strings.Cut(s, ":")
	switch {
	case ok && strings.EqualFold(scheme, "file"):
		return parseFileURL(s)
	case ok && strings.EqualFold(scheme, "sftp"):
		return parseSFTPURL(s)
	case ok && strings.EqualFold(scheme, "s3"):
		return parseS3URL(s)
	case ok && !strings.Contains(scheme, "/") && !strings.HasPrefix(rest, "//"):
		// scp's user@host:path, which sftp(1) also takes.
		return URL{}, fmt.Errorf("archive location %q is not a path or URL: %s", redact(s), supportedForms)
	case ok && isScheme(scheme):
		return URL{}, fmt.Errorf("archive location %q: unsupported scheme %q: %s", redact(s), scheme, supportedForms)
	}
	msg := fmt.Sprintf("archive path %q is relative: use an absolute path", s)
	if abs, err := filepath.Abs(s); err == nil {
		msg += fmt.Sprintf(" such as %q", abs)
	}
	return URL{}, errors.New(msg)
}

// parseFileURL parses file:///path, file://localhost/path and file:/path
// (RFC 8089).
func parseFileURL(s string) (URL, error) {
	u, err := parseURL(s)
	if err != nil {
		return URL{}, err
	}
	switch {
	case u.User != nil || u.Port() != "":
		return URL{}, fmt.Errorf("archive URL %q: a file URL takes no user or port: write file:///path, or sftp:// for a remote directory", redact(s))
	case u.Host != "" && !strings.EqualFold(u.Host, "localhost"):
		return URL{}, fmt.Errorf("archive URL %q names host %q: write file:///path for a local directory, sftp://%s/path for a remote one", s, u.Host, u.Host)
	case u.Path == "":
		return URL{}, fmt.Errorf("archive URL %q has no path: write file:///path", s)
	case strings.IndexByte(u.Path, 0) >= 0:
		return URL{}, fmt.Errorf("archive URL %q: path contains a NUL byte", s)
	}
	return URL{Scheme: "file", Path: filepath.Clean(u.Path)}, nil
}

// parseSFTPURL parses sftp://[user@]host[:port]/path.
func parseSFTPURL(s string) (URL, error) {
	u, err := parseURL(s)
	if err != nil {
		return URL{}, err
	}
	out := URL{Scheme: "sftp", Host: u.Hostname()}
	if u.User != nil {
		out.User = u.User.Username()
		if out.User == "" {
			return URL{}, fmt.Errorf("archive URL %q: empty user name before \"@\": leave out the \"@\" to log in as the current user", redact(s))
		}
		if strings.ContainsFunc(out.User, isControl) {
			return URL{}, fmt.Errorf("archive URL %q: invalid user name %q", s, out.User)
		}
	}
	if err := checkHost(out.Host); err != nil {
		return URL{}, fmt.Errorf("archive URL %q: %v: write sftp://[user@]host[:port]/path", s, err)
	}
	if strings.HasSuffix(u.Host, ":") {
		return URL{}, fmt.Errorf("archive URL %q: empty port: leave out the \":\" for port %d", s, DefaultSFTPPort)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return URL{}, fmt.Errorf("archive URL %q: port %s out of range 1-65535", s, p)
		}
		out.Port = n
	}
	p := u.Path
	switch {
	case p == "":
		return URL{}, fmt.Errorf("archive URL %q has no path: write sftp://%s/srv/walship, or sftp://%s/~/walship for a directory under the login directory", s, u.Host, u.Host)
	case strings.IndexByte(p, 0) >= 0:
		return URL{}, fmt.Errorf("archive URL %q: path contains a NUL byte", s)
	case p == "/~" || strings.HasPrefix(p, "/~/"):
		rel := path.Clean("./" + p[len("/~"):])
		if rel == ".." || strings.HasPrefix(rel, "../") {
			return URL{}, fmt.Errorf("archive URL %q: path leaves the login directory: write the absolute path", s)
		}
		out.Path = rel
	default:
		out.Path = path.Clean(p)
	}
	return out, nil
}

// parseS3URL parses s3://bucket[/prefix]. The bucket takes the characters
// S3 and the common compatible servers allow; the prefix is cleaned of
// slashes at either end and must not climb with "..", which S3 would
// store as a literal key element.
func parseS3URL(s string) (URL, error) {
	u, err := parseURL(s)
	if err != nil {
		return URL{}, err
	}
	switch {
	case u.User != nil:
		return URL{}, fmt.Errorf("archive URL %q: an s3 URL takes no user: credentials come from AWS_ACCESS_KEY_ID, ~/.aws/credentials or an instance role", redact(s))
	case u.Port() != "" || strings.HasSuffix(u.Host, ":"):
		return URL{}, fmt.Errorf("archive URL %q: an s3 URL takes no port: name the server with --s3-endpoint (or AWS_ENDPOINT_URL)", s)
	}
	if err := checkBucket(u.Host); err != nil {
		return URL{}, fmt.Errorf("archive URL %q: %v: write s3://bucket/prefix", s, err)
	}
	p := strings.Trim(u.Path, "/")
	if p != "" {
		p = path.Clean(p)
	}
	for _, elem := range strings.Split(p, "/") {
		if strings.HasPrefix(elem, ".") || strings.ContainsFunc(elem, isControl) || strings.Contains(elem, "\\") {
			return URL{}, fmt.Errorf("archive URL %q: prefix element %q is not allowed: use plain names, such as s3://%s/walship/main", s, elem, u.Host)
		}
	}
	return URL{Scheme: "s3", Host: u.Host, Path: p}, nil
}

// checkBucket accepts S3 bucket names: 3 to 63 letters, digits, dots,
// hyphens and underscores (the last two for older and compatible
// servers), starting and ending with a letter or digit.
func checkBucket(b string) error {
	if b == "" {
		return errors.New("missing bucket")
	}
	ok := len(b) >= 3 && len(b) <= 63 && isAlnum(rune(b[0])) && isAlnum(rune(b[len(b)-1])) &&
		!strings.ContainsFunc(b, func(r rune) bool { return !isAlnum(r) && r != '-' && r != '.' && r != '_' })
	if !ok {
		return fmt.Errorf("invalid bucket name %q (3-63 letters, digits, dots and hyphens)", b)
	}
	return nil
}

func isAlnum(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
}

// parseURL is url.Parse with the checks both schemes share. Its errors do not
// repeat a password, unlike url.Parse's.
func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("archive URL %q: %v: %s", redact(s), err, supportedForms)
	}
	if _, ok := u.User.Password(); ok {
		return nil, fmt.Errorf("archive URL %q contains a password: put the key in ssh-agent or use --identity", redact(s))
	}
	if strings.ContainsAny(s, "?#") {
		return nil, fmt.Errorf("archive URL %q has a query or fragment: walship takes no URL options; escape \"?\" and \"#\" in paths as %%3F and %%23", s)
	}
	if u.Opaque != "" {
		return nil, fmt.Errorf("archive URL %q: %s", s, supportedForms)
	}
	return u, nil
}

// checkHost accepts DNS names, IPv4 addresses and IPv6 addresses (with a
// simple zone), which is all an SSH server can be reached by. Being strict
// here keeps String's output parseable and error messages about the host
// early and clear.
func checkHost(h string) error {
	if h == "" {
		return errors.New("missing host")
	}
	if strings.Contains(h, ":") {
		addr, err := netip.ParseAddr(h)
		if err != nil || !addr.Is6() || strings.ContainsFunc(addr.Zone(), func(r rune) bool { return !isHostRune(r) }) {
			return fmt.Errorf("invalid IPv6 address %q", h)
		}
		return nil
	}
	if strings.ContainsFunc(h, func(r rune) bool { return !isHostRune(r) }) {
		return fmt.Errorf("invalid host name %q", h)
	}
	return nil
}

func isHostRune(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
		r == '-' || r == '.' || r == '_'
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func isScheme(s string) bool {
	if s == "" || !('a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z') {
		return false
	}
	for _, r := range s {
		if !isHostRune(r) && r != '+' {
			return false
		}
	}
	return true
}

// redact hides the password of a URL that has one, so that error messages
// and logs never carry it.
func redact(s string) string {
	_, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	at := strings.LastIndex(authority, "@")
	colon := strings.Index(authority[:max(at, 0)], ":")
	if at < 0 || colon < 0 {
		return s
	}
	start := len(s) - len(rest) + colon + 1
	return s[:start] + "xxxxx" + s[len(s)-len(rest)+at:]
}

// String returns the URL in the form ParseURL reads back to the same URL: a
// plain path for file URLs (what users type, and what reads best in logs),
// and an sftp URL with the necessary escapes otherwise.
func (u URL) String() string {
	switch u.Scheme {
	case "file":
		return u.Path
	case "s3":
		if u.Path == "" {
			return "s3://" + u.Host
		}
		return "s3://" + u.Host + escapePath("/"+u.Path)
	}
	var b strings.Builder
	b.WriteString(u.Scheme + "://")
	if u.User != "" {
		b.WriteString(url.User(u.User).String() + "@")
	}
	if strings.Contains(u.Host, ":") {
		b.WriteString("[" + strings.ReplaceAll(u.Host, "%", "%25") + "]")
	} else {
		b.WriteString(u.Host)
	}
	if u.Port != 0 {
		b.WriteString(":" + strconv.Itoa(u.Port))
	}
	switch {
	case u.Path == ".":
		b.WriteString("/~")
	case !strings.HasPrefix(u.Path, "/"):
		b.WriteString("/~" + escapePath("/"+u.Path))
	default:
		b.WriteString(escapePath(u.Path))
	}
	return b.String()
}

// escapePath escapes an absolute path for a URL ("%", "?", "#", spaces...).
func escapePath(p string) string { return (&url.URL{Path: p}).EscapedPath() }
