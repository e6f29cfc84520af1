package archive

import (
	"path"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in   string
		want URL
		str  string // String() of the result; "" means in
	}{
		{in: "/srv/walship/main", want: URL{Scheme: "file", Path: "/srv/walship/main"}},
		{in: "/srv/walship/main/", want: URL{Scheme: "file", Path: "/srv/walship/main"}, str: "/srv/walship/main"},
		{in: "/srv//walship/./x/../main", want: URL{Scheme: "file", Path: "/srv/walship/main"}, str: "/srv/walship/main"},
		{in: "/", want: URL{Scheme: "file", Path: "/"}},
		{in: "/mnt/nfs/a b?c#d%20", want: URL{Scheme: "file", Path: "/mnt/nfs/a b?c#d%20"}},
		{in: "file:///srv/walship", want: URL{Scheme: "file", Path: "/srv/walship"}, str: "/srv/walship"},
		{in: "FILE:///srv/walship", want: URL{Scheme: "file", Path: "/srv/walship"}, str: "/srv/walship"},
		{in: "file://localhost/srv/walship", want: URL{Scheme: "file", Path: "/srv/walship"}, str: "/srv/walship"},
		{in: "file:/srv/walship", want: URL{Scheme: "file", Path: "/srv/walship"}, str: "/srv/walship"},
		{in: "file:///srv/a%20b", want: URL{Scheme: "file", Path: "/srv/a b"}, str: "/srv/a b"},
		{in: "sftp://backup@host.example.com/srv/walship",
			want: URL{Scheme: "sftp", User: "backup", Host: "host.example.com", Path: "/srv/walship"}},
		{in: "sftp://backup@host:2222/srv/walship",
			want: URL{Scheme: "sftp", User: "backup", Host: "host", Port: 2222, Path: "/srv/walship"}},
		{in: "sftp://host/srv/walship", want: URL{Scheme: "sftp", Host: "host", Path: "/srv/walship"}},
		{in: "SFTP://host/srv/walship/", want: URL{Scheme: "sftp", Host: "host", Path: "/srv/walship"}, str: "sftp://host/srv/walship"},
		{in: "sftp://host:022/x", want: URL{Scheme: "sftp", Host: "host", Port: 22, Path: "/x"}, str: "sftp://host:22/x"},
		{in: "sftp://u@[::1]:2222/srv", want: URL{Scheme: "sftp", User: "u", Host: "::1", Port: 2222, Path: "/srv"}},
		{in: "sftp://[2001:db8::1]/srv", want: URL{Scheme: "sftp", Host: "2001:db8::1", Path: "/srv"}},
		{in: "sftp://[fe80::1%25eth0]/srv", want: URL{Scheme: "sftp", Host: "fe80::1%eth0", Path: "/srv"}},
		{in: "sftp://192.0.2.7:65535/srv", want: URL{Scheme: "sftp", Host: "192.0.2.7", Port: 65535, Path: "/srv"}},
		{in: "sftp://h/", want: URL{Scheme: "sftp", Host: "h", Path: "/"}},
		{in: "sftp://h/~/walship", want: URL{Scheme: "sftp", Host: "h", Path: "walship"}},
		{in: "sftp://h/~/a/../b/", want: URL{Scheme: "sftp", Host: "h", Path: "b"}, str: "sftp://h/~/b"},
		{in: "sftp://h/~", want: URL{Scheme: "sftp", Host: "h", Path: "."}},
		{in: "sftp://h/~/", want: URL{Scheme: "sftp", Host: "h", Path: "."}, str: "sftp://h/~"},
		{in: "sftp://h/~other/x", want: URL{Scheme: "sftp", Host: "h", Path: "/~other/x"}},
		{in: "sftp://h/srv/a%20b%3Fc%23d", want: URL{Scheme: "sftp", Host: "h", Path: "/srv/a b?c#d"}},
		{in: "sftp://first.last%40corp@h/x", want: URL{Scheme: "sftp", User: "first.last@corp", Host: "h", Path: "/x"}},
		{in: "s3://walship-archive/prod/main", want: URL{Scheme: "s3", Host: "walship-archive", Path: "prod/main"}},
		{in: "s3://walship-archive", want: URL{Scheme: "s3", Host: "walship-archive"}},
		{in: "s3://walship-archive/", want: URL{Scheme: "s3", Host: "walship-archive"}, str: "s3://walship-archive"},
		{in: "S3://b.example/a//b/./c/", want: URL{Scheme: "s3", Host: "b.example", Path: "a/b/c"}, str: "s3://b.example/a/b/c"},
		{in: "s3://bkt/a%20b%3Fc", want: URL{Scheme: "s3", Host: "bkt", Path: "a b?c"}},
	}
	for _, tt := range tests {
		got, err := ParseURL(tt.in)
		if err != nil {
			t.Errorf("ParseURL(%q): got error %v, want %+v", tt.in, err, tt.want)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseURL(%q): got %+v, want %+v", tt.in, got, tt.want)
		}
		wantStr := tt.str
		if wantStr == "" {
			wantStr = tt.in
		}
		if s := got.String(); s != wantStr {
			t.Errorf("ParseURL(%q).String(): got %q, want %q", tt.in, s, wantStr)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string // a part of the error message
	}{
		{"", "empty"},
		{"srv/walship", "relative"},
		{"./walship", "relative"},
		{"~/walship", "relative"},
		{"/srv/a\x00b", "NUL"},
		{"file:///srv/a%00b", "NUL"},
		{"sftp://h/srv/a%00b", "NUL"},
		{"sftp://a%00b@h/x", "user"},
		{"gs://bucket/walship", "unsupported scheme \"gs\""},
		{"s3://ab/x", "invalid bucket"},
		{"s3://-bucket/x", "invalid bucket"},
		{"s3://bu/cket/x", "invalid bucket"},
		{"s3:///x", "missing bucket"},
		{"s3://key:secret@bucket/x", "password"},
		{"s3://key@bucket/x", "no user"},
		{"s3://bucket:9000/x", "--s3-endpoint"},
		{"s3://bucket/../x", "not allowed"},
		{"s3://bucket/a/.hidden", "not allowed"},
		{"s3://bucket/x?region=eu", "query"},
		{"ssh://h/x", "sftp://[user@]host[:port]/path"},
		{"backup@host:/srv/walship", "not a path or URL"},
		{"host:/srv/walship", "sftp://"},
		{"sftp://u:secret@h/x", "ssh-agent"},
		{"sftp://u:@h/x", "password"},
		{"sftp://h/x?compress=none", "query"},
		{"sftp://h/x?", "query"},
		{"sftp://h/x#frag", "fragment"},
		{"file:///x?y", "query"},
		{"sftp://h:0/x", "out of range"},
		{"sftp://h:65536/x", "out of range"},
		{"sftp://h:99999999999999999999/x", "out of range"},
		{"sftp://h:/x", "empty port"},
		{"sftp://h:port/x", "port"},
		{"sftp:///x", "missing host"},
		{"sftp:/x", "missing host"},
		{"sftp://@h/x", "empty user"},
		{"sftp://h", "no path"},
		{"sftp://h/~/..", "login directory"},
		{"sftp://h/~/../x", "login directory"},
		{"sftp://[::1/x", "sftp://"},
		{"sftp://[zz::1]/x", "invalid host"},
		{"sftp://[fe80::1%25a+b]/x", "IPv6"},
		{"sftp://u%0A@h/x", "user"},
		{"sftp://h%2Fx/y", "host"},
		{"sftp://h\u00e9/y", "host"},
		{"file://host/srv", "file:///path"},
		{"file://u@localhost/srv", "no user"},
		{"file://", "no path"},
	}
	for _, tt := range tests {
		got, err := ParseURL(tt.in)
		if err == nil {
			t.Errorf("ParseURL(%q): got %+v, want an error containing %q", tt.in, got, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseURL(%q): got error %q, want it to contain %q", tt.in, err, tt.want)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL(%q): error %q repeats the password", tt.in, err)
		}
	}
}

// TestParseURLRelativeSuggestsAbsolute checks that the error for a relative
// path shows the absolute path the user probably meant.
func TestParseURLRelativeSuggestsAbsolute(t *testing.T) {
	_, err := ParseURL("archive")
	abs, _ := filepath.Abs("archive")
	if err == nil || !strings.Contains(err.Error(), abs) {
		t.Errorf("ParseURL(\"archive\"): got error %v, want it to suggest %q", err, abs)
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"/srv/walship/main", "file:///srv/walship", "file:/x", "file://localhost/x",
		"sftp://backup@host:2222/srv/walship", "sftp://host/srv", "sftp://u@[::1]:2222/srv",
		"sftp://[fe80::1%25eth0]/x", "sftp://h/~/walship", "sftp://h/~", "sftp://h/a%20b%3F%23",
		"sftp://a%40b@h/x", "sftp://u:p@h/x", "sftp://h/x?y#z", "relative", "s3://b/x", "h:/x",
		"s3://bucket/a%20b/c", "s3://bucket", "s3://b.c-d/x/../y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURL(s)
		if err != nil {
			return
		}
		switch u.Scheme {
		case "file":
			if !filepath.IsAbs(u.Path) || filepath.Clean(u.Path) != u.Path || u.User != "" || u.Host != "" || u.Port != 0 {
				t.Fatalf("ParseURL(%q): got %+v, want a clean absolute file URL", s, u)
			}
		case "sftp":
			if u.Host == "" || u.Port < 0 || u.Port > 65535 || u.Path == "" || path.Clean(u.Path) != u.Path {
				t.Fatalf("ParseURL(%q): got %+v, want a host and a clean path", s, u)
			}
		case "s3":
			if checkBucket(u.Host) != nil || u.User != "" || u.Port != 0 || strings.HasPrefix(u.Path, "/") ||
				strings.HasSuffix(u.Path, "/") || (u.Path != "" && path.Clean(u.Path) != u.Path) {
				t.Fatalf("ParseURL(%q): got %+v, want a bucket and a clean relative prefix", s, u)
			}
		default:
			t.Fatalf("ParseURL(%q): got scheme %q, want file, sftp or s3", s, u.Scheme)
		}
		for _, field := range []string{u.User, u.Host, u.Path} {
			if strings.IndexByte(field, 0) >= 0 {
				t.Fatalf("ParseURL(%q): got %+v, want no NUL bytes", s, u)
			}
		}
		again, err := ParseURL(u.String())
		if err != nil {
			t.Fatalf("ParseURL(%q) = %+v; ParseURL(%q): got error %v, want the same URL", s, u, u.String(), err)
		}
		if again != u {
			t.Fatalf("ParseURL(%q) = %+v; ParseURL(%q): got %+v, want the same URL", s, u, u.String(), again)
		}
	})
}
