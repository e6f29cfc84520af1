package s3

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// profile holds the settings of one profile of the shared AWS files,
// ~/.aws/credentials and ~/.aws/config, that walship uses.
type profile struct {
	Name  string
	Files string // the files read, for messages

	AccessKeyID       string
	SecretAccessKey   string
	SessionToken      string
	CredentialProcess string
	RoleARN           string
	Region            string
	EndpointURL       string
	CABundle          string
}

// loadProfile reads profile name (AWS_PROFILE, else "default") from the
// shared credentials and config files (AWS_SHARED_CREDENTIALS_FILE and
// AWS_CONFIG_FILE, else those under ~/.aws). Missing files are no error;
// the credentials file wins where both set a key, as in the SDKs.
func loadProfile(name, credFile string, env func(string) string) (profile, error) {
	if name == "" {
		name = env("AWS_PROFILE")
	}
	if name == "" {
		name = "default"
	}
	home := env("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	if credFile == "" {
		credFile = env("AWS_SHARED_CREDENTIALS_FILE")
	}
	if credFile == "" {
		credFile = filepath.Join(home, ".aws", "credentials")
	}
	confFile := env("AWS_CONFIG_FILE")
	if confFile == "" {
		confFile = filepath.Join(home, ".aws", "config")
	}
	p := profile{Name: name, Files: credFile + " and " + confFile}
	section := "profile " + name
	if name == "default" {
		section = "default"
	}
	conf, err := readINI(confFile, section)
	if err != nil {
		return p, err
	}
	cred, err := readINI(credFile, name)
	if err != nil {
		return p, err
	}
	for k, v := range cred {
		conf[k] = v
	}
	p.AccessKeyID = conf["aws_access_key_id"]
	p.SecretAccessKey = conf["aws_secret_access_key"]
	p.SessionToken = conf["aws_session_token"]
	p.CredentialProcess = conf["credential_process"]
	p.RoleARN = conf["role_arn"]
	p.Region = conf["region"]
	p.EndpointURL = conf["endpoint_url"]
	p.CABundle = conf["ca_bundle"]
	return p, nil
}

// readINI returns the keys of one section of an AWS shared file. Nested
// sections (the "s3 =" blocks of the config file) are skipped.
func readINI(file, section string) (map[string]string, error) {
	out := map[string]string{}
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' || trimmed[0] == ';' {
			continue
		}
		if strings.HasPrefix(trimmed, "[") && strings.HasSuffix(trimmed, "]") {
			in = strings.Join(strings.Fields(trimmed[1:len(trimmed)-1]), " ") == section
			continue
		}
		if !in || line[0] == ' ' || line[0] == '\t' {
			continue // another section, or a nested key
		}
		k, v, ok := strings.Cut(trimmed, "=")
		if !ok {
			continue
		}
		out[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	return out, sc.Err()
}
