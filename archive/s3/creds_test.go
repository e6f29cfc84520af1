package s3

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The credential endpoints of AWS (the ECS container endpoint, IMDSv2,
// STS) cannot run here: these stand-ins answer as the AWS documentation
// says they do, and check what walship sends them.

func chain(env map[string]string) *credentialChain {
	return &credentialChain{env: func(k string) string { return env[k] }, client: &http.Client{Timeout: 5 * time.Second}}
}

func credsJSON(id string, expires time.Time) string {
	b, _ := json.Marshal(map[string]string{"AccessKeyId": id, "SecretAccessKey": "secret-" + id, "Token": "token-" + id,
		"Expiration": expires.UTC().Format(time.RFC3339)})
	return string(b)
}

func checkCreds(t *testing.T, cr credentials, err error, id, source string) {
	t.Helper()
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if cr.AccessKeyID != id || cr.SecretAccessKey != "secret-"+id || cr.SessionToken != "token-"+id || !strings.Contains(cr.Source, source) {
		t.Errorf("got %+v, want key %s, its secret and token, from %q", cr, id, source)
	}
}

// TestContainerCredentials: the ECS (or EKS pod identity) endpoint, with
// its authorization token from a file, and renewed before it expires.
func TestContainerCredentials(t *testing.T) {
	var calls atomic.Int32
	expires := time.Now().Add(time.Hour)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/credentials/task" || r.Header.Get("Authorization") != "pod-token" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		n := calls.Add(1)
		fmt.Fprint(w, credsJSON(fmt.Sprint("ASIA", n), expires))
	}))
	defer ts.Close()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("pod-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := chain(map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": ts.URL + "/v2/credentials/task",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tok})
	cr, err := c.get(context.Background())
	checkCreds(t, cr, err, "ASIA1", "container endpoint")
	cr, err = c.get(context.Background())
	checkCreds(t, cr, err, "ASIA1", "container endpoint") // cached: an hour left
	expires = time.Now().Add(2 * time.Minute)             // the next ones expire soon
	c.cached.Expires = time.Now().Add(time.Minute)        // and so do these
	cr, err = c.get(context.Background())
	checkCreds(t, cr, err, "ASIA2", "container endpoint")
	if calls.Load() != 2 {
		t.Errorf("endpoint asked %d times, want 2 (once, and again near expiry)", calls.Load())
	}

	// A wrong token is an error that names the endpoint, not "no credentials".
	c = chain(map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": ts.URL + "/v2/credentials/task",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN": "wrong"})
	if _, err := c.get(context.Background()); err == nil || !strings.Contains(err.Error(), "container endpoint") ||
		!strings.Contains(err.Error(), "403") {
		t.Errorf("wrong token: got %v, want the endpoint's 403", err)
	}
}

// TestInstanceRoleCredentials: IMDSv2 only (a session token first, sent
// with every read), the role's name, then its credentials.
func TestInstanceRoleCredentials(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "PUT" && r.URL.Path == "/latest/api/token":
			if r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
				http.Error(w, "no ttl", http.StatusBadRequest)
				return
			}
			fmt.Fprint(w, "imds-session")
		case r.Header.Get("X-aws-ec2-metadata-token") != "imds-session":
			http.Error(w, "IMDSv1 is disabled", http.StatusUnauthorized)
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/":
			fmt.Fprint(w, "walship-role\n")
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/walship-role":
			fmt.Fprint(w, credsJSON("ASIAEC2", time.Now().Add(6*time.Hour)))
		default:
			http.NotFound(w, r)
		}
	}))
	defer ts.Close()
	old := imdsBase
	imdsBase = ts.URL
	defer func() { imdsBase = old }()
	cr, err := chain(nil).get(context.Background())
	checkCreds(t, cr, err, "ASIAEC2", "instance role walship-role")

	// AWS_EC2_METADATA_DISABLED keeps walship away from it.
	if _, err := chain(map[string]string{"AWS_EC2_METADATA_DISABLED": "true"}).get(context.Background()); err != ErrNoCredentials {
		t.Errorf("with AWS_EC2_METADATA_DISABLED: got %v, want ErrNoCredentials", err)
	}
}

// TestWebIdentityCredentials: an EKS service account's token exchanged
// with STS AssumeRoleWithWebIdentity (AWS_ENDPOINT_URL_STS names the
// stand-in).
func TestWebIdentityCredentials(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.Method != "POST" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		want := url.Values{"Action": {"AssumeRoleWithWebIdentity"}, "Version": {"2011-06-15"},
			"RoleArn": {"arn:aws:iam::123456789012:role/walship"}, "RoleSessionName": {"walship-test"}, "WebIdentityToken": {"jwt"}}
		for k, v := range want {
			if r.PostForm.Get(k) != v[0] {
				http.Error(w, "<ErrorResponse><Error><Code>InvalidIdentityToken</Code></Error></ErrorResponse>", http.StatusBadRequest)
				return
			}
		}
		fmt.Fprintf(w, `<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>
<AccessKeyId>ASIAWEB</AccessKeyId><SecretAccessKey>secret-ASIAWEB</SecretAccessKey><SessionToken>token-ASIAWEB</SessionToken>
<Expiration>%s</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>`,
			time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	}))
	defer ts.Close()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("jwt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": tok, "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/walship",
		"AWS_ROLE_SESSION_NAME": "walship-test", "AWS_ENDPOINT_URL_STS": ts.URL}
	cr, err := chain(env).get(context.Background())
	checkCreds(t, cr, err, "ASIAWEB", "web identity role arn:aws:iam::123456789012:role/walship")
	if cr.Expires.IsZero() {
		t.Errorf("web identity credentials: no expiry, want the one STS gave")
	}

	env["AWS_ROLE_SESSION_NAME"] = "other"
	if _, err := chain(env).get(context.Background()); err == nil || !strings.Contains(err.Error(), "InvalidIdentityToken") {
		t.Errorf("refused token: got %v, want STS's InvalidIdentityToken", err)
	}
}
