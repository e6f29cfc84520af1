package s3_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/s3"
)

// TestTLSSessions checks that a second Storage (the next process) resumes
// the TLS session the first one kept in TLSSessionDir, that another trust
// setting does not, and that a missing key over https is still "not
// found" and nothing else.
func TestTLSSessions(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil)
	var mu sync.Mutex
	var resumed []bool
	ts.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		resumed = append(resumed, r.TLS.DidResume)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte("<Error><Code>NoSuchKey</Code><Message>no</Message></Error>"))
	})
	ts.StartTLS()
	t.Cleanup(ts.Close)
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	writeCert(t, bundle, ts)
	other := filepath.Join(t.TempDir(), "other.pem")
	writeCert(t, other, ts) // the same CA, under another name: another trust setting
	dir := filepath.Join(t.TempDir(), "sessions")

	call := func(bundle, sessions string) bool {
		t.Helper()
		s, err := s3.New(s3.Config{Bucket: "b", Endpoint: ts.URL, PathStyle: true, Timeout: 5 * time.Second,
			Getenv: env(nil), CABundle: bundle, TLSSessionDir: sessions})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer s.Close()
		mu.Lock()
		resumed = nil
		mu.Unlock()
		rc, err := s.Open(t.Context(), "wal/x")
		if err == nil {
			rc.Close()
		}
		if !archive.IsNotExist(err) {
			t.Fatalf("Open of a missing key over https: got %v, want not found", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(resumed) != 1 {
			t.Fatalf("got %d requests, want 1", len(resumed))
		}
		return resumed[0]
	}
	if call(bundle, dir) {
		t.Errorf("first call: resumed a session, want a full handshake")
	}
	if !call(bundle, dir) {
		t.Errorf("second call with the same session directory: full handshake, want a resumed session")
	}
	if call(other, dir) {
		t.Errorf("call with another CA bundle: resumed the session verified against the first, want a full handshake")
	}
	if call(bundle, "") {
		t.Errorf("call without a session directory: resumed a session, want a full handshake")
	}
	fis, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, fi := range fis {
		info, _ := fi.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("session file %s has mode %v, want 0600", fi.Name(), info.Mode().Perm())
		}
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("session directory has mode %v, want 0700", st.Mode().Perm())
	}

	// A directory others can read is not used.
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	call(bundle, open)
	if call(bundle, open) {
		t.Errorf("session directory of mode 0755: resumed a session, want none kept there")
	}
	if fis, _ := os.ReadDir(open); len(fis) != 0 {
		t.Errorf("session directory of mode 0755: holds %d files, want none", len(fis))
	}

	// A damaged session file is a full handshake, not an error.
	for _, fi := range mustReadDir(t, dir) {
		if err := os.WriteFile(filepath.Join(dir, fi.Name()), []byte("walship-tls-session-1\n\x00\x00\x00\x05abc"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if call(bundle, dir) {
		t.Errorf("damaged session file: resumed, want a full handshake")
	}
}

// TestCABundle checks that a CA bundle replaces the system's store: a
// server it does not vouch for is a TLS error naming the fix, and a
// bundle that cannot be read stops New.
func TestCABundle(t *testing.T) {
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(ts.Close)
	wrong := filepath.Join(t.TempDir(), "wrong.pem") // a CA that did not sign the server's certificate
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not the server's CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrong, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := s3.New(s3.Config{Bucket: "b", Endpoint: ts.URL, PathStyle: true, Timeout: 5 * time.Second,
		Getenv: env(map[string]string{"AWS_CA_BUNDLE": wrong})})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer s.Close()
	_, err = s.Stat(t.Context(), "wal/x")
	if !errors.Is(err, s3.ErrTLS) || !strings.Contains(err.Error(), "--s3-ca-bundle") {
		t.Errorf("Stat against a server the AWS_CA_BUNDLE does not vouch for: got %v, want ErrTLS naming --s3-ca-bundle", err)
	}
	checkNotMissing(t, "stat", err)

	for _, tt := range []struct{ name, content, want string }{
		{"missing", "", "read the CA bundle"},
		{"no certificate", "not a certificate\n", "holds no PEM certificate"},
	} {
		f := filepath.Join(t.TempDir(), "ca.pem")
		if tt.content != "" {
			if err := os.WriteFile(f, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		_, err := s3.New(s3.Config{Bucket: "b", Endpoint: ts.URL, Getenv: env(nil), CABundle: f})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s CA bundle: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func writeCert(t *testing.T, file string, ts *httptest.Server) {
	t.Helper()
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	if err := os.WriteFile(file, cert, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustReadDir(t *testing.T, dir string) []os.DirEntry {
	t.Helper()
	fis, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return fis
}
