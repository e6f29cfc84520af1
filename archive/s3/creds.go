package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// credentials are what requests are signed with.
type credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// Expires is when temporary credentials stop working; zero for keys
	// that do not expire.
	Expires time.Time
	// Source says where they came from, for messages.
	Source string
}

// ErrNoCredentials is returned when no source of the chain has credentials.
var ErrNoCredentials = errors.New("no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, " +
	"write them to ~/.aws/credentials (of the user walship runs as, postgres for archive_command), or run where an instance or container role applies")

// credentialChain finds credentials the standard AWS way, in the SDKs'
// order: the environment, a web identity token (EKS), the shared files of
// the profile, the container's credentials endpoint (ECS), and the instance
// role (IMDSv2). The first that has any wins; temporary credentials are
// fetched again shortly before they expire.
type credentialChain struct {
	env     func(string) string
	profile profile
	client  *http.Client // for the credential endpoints, with short timeouts

	mu     sync.Mutex
	cached credentials
}

// refreshBefore is how long before expiry temporary credentials are renewed.
const refreshBefore = 5 * time.Minute

// get returns valid credentials, fetching them when needed.
func (c *credentialChain) get(ctx context.Context) (credentials, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cached.AccessKeyID != "" && (c.cached.Expires.IsZero() || time.Until(c.cached.Expires) > refreshBefore) {
		return c.cached, nil
	}
	cr, err := c.fetch(ctx)
	if err != nil {
		return credentials{}, err
	}
	c.cached = cr
	return cr, nil
}

func (c *credentialChain) fetch(ctx context.Context) (credentials, error) {
	if id, secret := c.env("AWS_ACCESS_KEY_ID"), c.env("AWS_SECRET_ACCESS_KEY"); id != "" || secret != "" {
		if id == "" || secret == "" {
			return credentials{}, errors.New("S3 credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together")
		}
		return credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: c.env("AWS_SESSION_TOKEN"), Source: "environment"}, nil
	}
	if file := c.env("AWS_WEB_IDENTITY_TOKEN_FILE"); file != "" && c.env("AWS_ROLE_ARN") != "" {
		return c.webIdentity(ctx, file, c.env("AWS_ROLE_ARN"))
	}
	p := c.profile
	switch {
	case p.AccessKeyID != "":
		return credentials{AccessKeyID: p.AccessKeyID, SecretAccessKey: p.SecretAccessKey, SessionToken: p.SessionToken,
			Source: "profile " + p.Name + " of " + p.Files}, nil
	case p.CredentialProcess != "":
		return credentialProcess(ctx, p.CredentialProcess)
	case p.RoleARN != "":
		return credentials{}, fmt.Errorf("S3 credentials: profile %s assumes role %s, which walship does not do itself: "+
			"export the role's keys (aws configure export-credentials --profile %s --format env) or use credential_process", p.Name, p.RoleARN, p.Name)
	}
	if full, rel := c.env("AWS_CONTAINER_CREDENTIALS_FULL_URI"), c.env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"); full != "" || rel != "" {
		if full == "" {
			full = "http://169.254.170.2" + rel
		}
		return c.container(ctx, full)
	}
	if !strings.EqualFold(c.env("AWS_EC2_METADATA_DISABLED"), "true") {
		cr, err := c.imds(ctx)
		if err == nil {
			return cr, nil
		}
	}
	return credentials{}, ErrNoCredentials
}

// awsJSONCredentials is the credentials JSON of the container endpoint,
// IMDS and credential_process.
type awsJSONCredentials struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string
	Token           string
	SessionToken    string
	Expiration      string
}

func (j awsJSONCredentials) credentials(source string) (credentials, error) {
	if j.AccessKeyID == "" || j.SecretAccessKey == "" {
		return credentials{}, fmt.Errorf("S3 credentials from %s: no AccessKeyId or SecretAccessKey in the answer", source)
	}
	cr := credentials{AccessKeyID: j.AccessKeyID, SecretAccessKey: j.SecretAccessKey, SessionToken: j.Token, Source: source}
	if j.SessionToken != "" {
		cr.SessionToken = j.SessionToken
	}
	if j.Expiration != "" {
		t, err := time.Parse(time.RFC3339, j.Expiration)
		if err != nil {
			return credentials{}, fmt.Errorf("S3 credentials from %s: expiration %q: %w", source, j.Expiration, err)
		}
		cr.Expires = t
	}
	return cr, nil
}

// container fetches the credentials of an ECS task (or EKS pod identity).
func (c *credentialChain) container(ctx context.Context, uri string) (credentials, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", uri, nil)
	if err != nil {
		return credentials{}, fmt.Errorf("S3 credentials: container endpoint %q: %w", uri, err)
	}
	token := c.env("AWS_CONTAINER_AUTHORIZATION_TOKEN")
	if f := c.env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return credentials{}, fmt.Errorf("S3 credentials: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	var j awsJSONCredentials
	if err := c.getJSON(req, &j); err != nil {
		return credentials{}, fmt.Errorf("S3 credentials from the container endpoint %s: %w", uri, err)
	}
	return j.credentials("container endpoint")
}

// imdsBase is the instance metadata service; tests replace it.
var imdsBase = "http://169.254.169.254"

// imds fetches the instance role's credentials with IMDSv2.
func (c *credentialChain) imds(ctx context.Context) (credentials, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "PUT", imdsBase+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "21600")
	token, err := c.getText(req)
	if err != nil {
		return credentials{}, err
	}
	get := func(p string) *http.Request {
		req, _ := http.NewRequestWithContext(ctx, "GET", imdsBase+"/latest/meta-data/iam/security-credentials/"+p, nil)
		req.Header.Set("X-aws-ec2-metadata-token", token)
		return req
	}
	role, err := c.getText(get(""))
	if err != nil {
		return credentials{}, err
	}
	role, _, _ = strings.Cut(strings.TrimSpace(role), "\n")
	var j awsJSONCredentials
	if err := c.getJSON(get(role), &j); err != nil {
		return credentials{}, err
	}
	return j.credentials("instance role " + role)
}

// webIdentity exchanges a web identity token for role credentials with
// STS AssumeRoleWithWebIdentity, which needs no signature.
func (c *credentialChain) webIdentity(ctx context.Context, file, role string) (credentials, error) {
	tok, err := os.ReadFile(file)
	if err != nil {
		return credentials{}, fmt.Errorf("S3 credentials: web identity token: %w", err)
	}
	session := c.env("AWS_ROLE_SESSION_NAME")
	if session == "" {
		session = fmt.Sprintf("walship-%d", time.Now().Unix())
	}
	// As the SDKs: the service's own endpoint variable, the global one,
	// else AWS STS of the region.
	endpoint := firstOf(c.env("AWS_ENDPOINT_URL_STS"), c.env("AWS_ENDPOINT_URL"))
	switch r := c.env("AWS_REGION"); {
	case endpoint != "":
	case r != "":
		endpoint = "https://sts." + r + ".amazonaws.com"
	default:
		endpoint = "https://sts.amazonaws.com"
	}
	q := url.Values{"Action": {"AssumeRoleWithWebIdentity"}, "Version": {"2011-06-15"}, "RoleArn": {role},
		"RoleSessionName": {session}, "WebIdentityToken": {strings.TrimSpace(string(tok))}}
	req, err := http.NewRequestWithContext(ctx, "POST", endpoint, strings.NewReader(q.Encode()))
	if err != nil {
		return credentials{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	body, err := c.getText(req)
	if err != nil {
		return credentials{}, fmt.Errorf("S3 credentials: assume role %s with web identity: %w", role, err)
	}
	var out struct {
		Credentials struct {
			AccessKeyID     string `xml:"AccessKeyId"`
			SecretAccessKey string
			SessionToken    string
			Expiration      string
		} `xml:"AssumeRoleWithWebIdentityResult>Credentials"`
	}
	if err := xml.Unmarshal([]byte(body), &out); err != nil {
		return credentials{}, fmt.Errorf("S3 credentials: STS answer: %w", err)
	}
	cr := out.Credentials
	return awsJSONCredentials{AccessKeyID: cr.AccessKeyID, SecretAccessKey: cr.SecretAccessKey, Token: cr.SessionToken,
		Expiration: cr.Expiration}.credentials("web identity role " + role)
}

// credentialProcess runs a profile's credential_process.
func credentialProcess(ctx context.Context, command string) (credentials, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return credentials{}, fmt.Errorf("S3 credentials: credential_process %q: %w: %s", command, err, strings.TrimSpace(stderr.String()))
	}
	var j awsJSONCredentials
	if err := json.Unmarshal(out, &j); err != nil {
		return credentials{}, fmt.Errorf("S3 credentials: credential_process %q printed no credentials JSON: %w", command, err)
	}
	return j.credentials("credential_process")
}

func (c *credentialChain) getText(req *http.Request) (string, error) {
	resp, err := c.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b[:min(len(b), 300)]))
	}
	return string(b), nil
}

func (c *credentialChain) getJSON(req *http.Request, v any) error {
	s, err := c.getText(req)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(s), v)
}
