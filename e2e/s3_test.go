package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/s3"
	"github.com/walship/walship/archive/s3/s3test"
	"github.com/walship/walship/archive/sftp/sftptest"
	"github.com/walship/walship/internal/pgtest"
)

// s3Archive is an archive on a real S3 server (versitygw) on loopback.
// walship finds its settings in a config file readable by the PostgreSQL
// user, credentials in a shared credentials file beside it: archive_command
// and restore_command need no environment. WALSHIP_CONFIG points the
// commands the test runs itself at the same file.
type s3Archive struct {
	srv    *s3test.Server
	bucket string
	url    string // s3://bucket/prefix
	config string // walship's config file
	creds  string // the shared credentials file
}

func newS3Archive(t *testing.T) *s3Archive {
	t.Helper()
	srv := s3test.Start(t)
	a := &s3Archive{srv: srv, bucket: srv.Bucket(t, "walship-e2e")}
	a.url = "s3://" + a.bucket + "/clusters/main"
	dir := pgtest.TempDir(t)
	a.creds = filepath.Join(dir, "credentials")
	a.config = filepath.Join(dir, "walship.yaml")
	writeFile(t, a.creds, "[default]\naws_access_key_id = "+s3test.AccessKey+"\naws_secret_access_key = "+s3test.SecretKey+"\n")
	writeFile(t, a.config, a.configText(srv.Endpoint))
	pgtest.Chown(t, dir)
	t.Setenv("WALSHIP_CONFIG", a.config)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return a
}

// configText is the config file for the archive at endpoint.
func (a *s3Archive) configText(endpoint string) string {
	return fmt.Sprintf("archive: %s\ns3-endpoint: %s\ns3-region: %s\ns3-path-style: true\ns3-credentials-file: %s\ns3-timeout: 5s\n",
		a.url, endpoint, s3test.Region, a.creds)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// storage opens the archive for the test's own checks.
func (a *s3Archive) storage(t *testing.T) *s3.Storage {
	t.Helper()
	st, err := s3.New(s3.Config{Bucket: a.bucket, Prefix: "clusters/main", Endpoint: a.srv.Endpoint, PathStyle: true,
		Region: s3test.Region, CredentialsFile: a.creds, Getenv: func(k string) string {
			if k == "AWS_EC2_METADATA_DISABLED" {
				return "true"
			}
			return ""
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// pushCommand is the archive_command, with the config file named.
func (a *s3Archive) pushCommand(bin string) string {
	return fmt.Sprintf("archive_command = '%s --config %s push %%p %%f'", bin, a.config)
}

func (a *s3Archive) primary(t *testing.T, bin string) *pgtest.Cluster {
	t.Helper()
	return pgtest.New(t, pgtest.Options{
		InitdbArgs: []string{"--wal-segsize=1"},
		Conf:       []string{"archive_mode = on", a.pushCommand(bin)},
	})
}

// A primary archives to S3 with archive_command; a re-push of an archived
// segment succeeds, a different file under its name is refused and the
// archived one left alone; a backup and a point-in-time restore from S3
// give exactly the rows committed before the target.
func TestS3PushBackupRestore(t *testing.T) {
	a := newS3Archive(t)
	bin := pgtest.Walship(t)
	s := &backupSetup{bin: bin, arch: a.url, primary: a.primary(t, bin)}
	p := s.primary
	p.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	p.Exec(t, "INSERT INTO t SELECT generate_series(1, 100)")
	seg := p.SwitchWAL(t)
	p.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", seg, time.Minute)
	st := a.storage(t)
	if _, _, err := archive.StatWAL(t.Context(), st, seg); err != nil {
		t.Fatalf("%s is not in the bucket after archiving: %v", seg, err)
	}

	// Dedupe and conflict, as PostgreSQL's archiver would call push.
	archived := archivedWAL(t, st, seg)
	dir := t.TempDir()
	same := filepath.Join(dir, seg)
	if err := os.WriteFile(same, archived, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stderr := sftpWalship(t, bin, "--config", a.config, "push", "--pgdata", p.DataDir, same, seg); code != 0 {
		t.Errorf("re-push of an identical segment: exit %d, want 0\n%s", code, stderr)
	}
	other := bytes.Clone(archived)
	other[len(other)-1] ^= 0xff
	if err := os.WriteFile(same, other, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stderr := sftpWalship(t, bin, "--config", a.config, "push", "--pgdata", p.DataDir, same, seg)
	if code != 1 || !strings.Contains(stderr, "different") {
		t.Errorf("push of a different segment under an archived name: exit %d, %q; want 1 and a conflict", code, stderr)
	}
	if got := archivedWAL(t, st, seg); !bytes.Equal(got, archived) {
		t.Errorf("the archived segment changed after a refused push")
	}

	m := s.backup(t, p)
	p.Exec(t, "INSERT INTO t SELECT generate_series(101, 250)")
	p.Exec(t, "SELECT pg_create_restore_point('after_250')")
	p.Exec(t, "INSERT INTO t SELECT generate_series(251, 300)")
	s.archiveAll(t)
	if out := s.walship(t, "info", "--archive", a.url); !strings.Contains(out, m.ID) {
		t.Errorf("walship info does not list backup %s:\n%s", m.ID, out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--target-name", "after_250", "--target-action", "promote"}, "250"},
		{nil, "300"},
	} {
		c := s.restore(t, tc.args...)
		c.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
		if got := c.QueryValue(t, "SELECT count(*) FROM t"); got != tc.want {
			t.Errorf("restored with %q: %s rows, want %s", tc.args, got, tc.want)
		}
		conf, _ := os.ReadFile(filepath.Join(c.DataDir, "postgresql.auto.conf"))
		if !strings.Contains(string(conf), "--s3-endpoint "+a.srv.Endpoint) {
			t.Errorf("restore_command does not carry the S3 settings:\n%s", conf)
		}
	}
}

// A pg_standby-mode standby fed by walship wait from S3 keeps waiting while
// the object store is down (its primary's pushes fail meanwhile), goes on
// once it is back, and a smart promotion ends recovery with every row.
func TestS3WarmStandbyOutage(t *testing.T) {
	a := newS3Archive(t)
	bin := pgtest.Walship(t)
	trigger := filepath.Join(pgtest.TempDir(t), "walship.trigger")
	primary := a.primary(t, bin)
	primary.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	standby := pgtest.BaseBackup(t, primary, pgtest.Options{Conf: []string{
		fmt.Sprintf("restore_command = '%s --config %s wait --trigger %s --poll 200ms %%f %%p %%r'", bin, a.config, trigger),
		fmt.Sprintf("recovery_end_command = 'rm -f %s'", trigger),
		"hot_standby = on",
		"recovery_prefetch = off",
	}})
	standby.WriteFile(t, "recovery.signal", "")
	primary.SwitchWAL(t)
	standby.StartNoWait(t)
	standby.WaitFor(t, "SELECT pg_is_in_recovery()", "t", time.Minute)
	insert := func(from, to int) string {
		t.Helper()
		primary.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series($1::int, $2::int - 1) g", from, to)
		return primary.SwitchWAL(t)
	}
	seg := insert(0, 1000)
	primary.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", seg, time.Minute)
	standby.WaitFor(t, "SELECT count(*) FROM t", "1000", time.Minute)

	a.srv.Stop(t)
	seg = insert(1000, 2000)
	time.Sleep(8 * time.Second) // longer than a call's timeout and its retries
	if got := standby.QueryValue(t, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("the standby left recovery while the object store was down")
	}
	if got := primary.QueryValue(t, "SELECT failed_count::int > 0 FROM pg_stat_archiver"); got != "t" {
		t.Errorf("no push failed while the object store was down")
	}
	if log := serverLog(t, standby); !strings.Contains(log, "archive unavailable, retrying") {
		t.Errorf("walship wait did not log its retries while the object store was down")
	}
	a.srv.Restart(t)
	primary.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", seg, time.Minute)
	standby.WaitFor(t, "SELECT count(*) FROM t", "2000", time.Minute)

	insert(2000, 3000)
	primary.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", primary.QueryValue(t,
		"SELECT pg_walfile_name(pg_current_wal_lsn() - 1)"), time.Minute)
	if out, err := exec.Command(bin, "promote", "--trigger", trigger).CombinedOutput(); err != nil {
		t.Fatalf("walship promote: %v\n%s", err, out)
	}
	standby.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
	if got := standby.QueryValue(t, "SELECT count(*) FROM t"); got != "3000" {
		t.Errorf("promoted standby has %s rows, want all 3000 archived", got)
	}
}

// walship tail ships increments to S3; a primary killed mid-segment, and a
// standby promoted with a smart trigger, keep every commit acknowledged
// more than an interval (plus slack) before the kill.
func TestS3TailFailover(t *testing.T) {
	a := newS3Archive(t)
	bin := pgtest.Walship(t)
	trig := filepath.Join(pgtest.TempDir(t), "walship.trigger")
	primary := a.primary(t, bin)
	primary.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, pad text)")
	seg := primary.SwitchWAL(t)
	primary.WaitFor(t, "SELECT last_archived_wal FROM pg_stat_archiver", seg, time.Minute)
	standby := pgtest.BaseBackup(t, primary, pgtest.Options{Conf: []string{
		fmt.Sprintf("restore_command = '%s --config %s wait --trigger %s --poll 100ms %%f %%p %%r'", bin, a.config, trig),
		"recovery_end_command = 'rm -f " + trig + "'",
		"hot_standby = on",
		"recovery_prefetch = off",
	}})
	standby.WriteFile(t, "recovery.signal", "")
	primary.SwitchWAL(t)
	standby.StartNoWait(t)
	standby.WaitFor(t, "SELECT pg_is_in_recovery()", "t", time.Minute)

	tail, tailLog := startTail(t, bin, primary, a.url)
	acks := make(chan []ack, 1)
	go func() { acks <- writeLoad(primary.ConnString()) }()
	time.Sleep(3 * time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var off int
		fmt.Sscan(primary.QueryValue(t, "SELECT file_offset FROM pg_walfile_name_offset(pg_current_wal_flush_lsn())"), &off)
		if off >= 256<<10 && off <= 768<<10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flush position stayed out of [256 KiB, 768 KiB] of its segment for 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	killed := time.Now()
	tail.Process.Signal(syscall.SIGKILL)
	primary.Kill(t)
	acked := <-acks
	if len(acked) < 100 {
		t.Fatalf("only %d commits acknowledged: the load did not run", len(acked))
	}
	if out, err := standby.Command(t, bin, "promote", "--trigger", trig).CombinedOutput(); err != nil {
		t.Fatalf("walship promote: %v\n%s", err, out)
	}
	standby.WaitFor(t, "SELECT pg_is_in_recovery()", "f", time.Minute)
	present := standby.QueryInts(t, "SELECT id FROM t")
	slack := tailInterval + 500*time.Millisecond
	for _, ac := range acked {
		if ac.at.Before(killed.Add(-slack)) && !present[ac.id] {
			t.Errorf("row %d, acknowledged %v before the kill, is missing after the failover", ac.id, killed.Sub(ac.at))
		}
	}
	if log := standby.LogTail(2000); !strings.Contains(log, "restored the tail of the segment") {
		t.Errorf("the standby did not restore a tail from S3; its log:\n%s", log)
	}
	if t.Failed() {
		b, _ := os.ReadFile(tailLog)
		t.Logf("walship tail log:\n%s", b)
	}
}

// A standby.signal standby restores from S3 with walship fetch --prefetch,
// and follows the primary through the archive alone.
func TestS3FetchPrefetchStandby(t *testing.T) {
	a := newS3Archive(t)
	bin := pgtest.Walship(t)
	primary := a.primary(t, bin)
	primary.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	standby := pgtest.BaseBackup(t, primary, pgtest.Options{Conf: []string{
		fmt.Sprintf("restore_command = '%s --config %s fetch --prefetch 4 %%f %%p'", bin, a.config),
		"hot_standby = on",
		"wal_retrieve_retry_interval = 500ms",
	}})
	standby.WriteFile(t, "standby.signal", "")
	primary.SwitchWAL(t)
	standby.StartNoWait(t)
	standby.WaitFor(t, "SELECT pg_is_in_recovery()", "t", time.Minute)
	for i := range 6 {
		primary.Exec(t, "INSERT INTO t SELECT generate_series($1::int, $1::int + 99)", i*100)
		primary.SwitchWAL(t)
	}
	standby.WaitFor(t, "SELECT count(*) FROM t", "600", time.Minute)
	if _, err := os.Stat(filepath.Join(standby.DataDir, "pg_wal", "walship-spool")); err != nil {
		t.Errorf("no prefetch spool: %v", err)
	}
}

// Faults: a push whose connection to the object store breaks half-way, a
// backup killed half-way, wrong credentials, and a bucket that does not
// exist. Nothing partial is ever listed or served, and every failure says
// what is wrong.
func TestS3Faults(t *testing.T) {
	a := newS3Archive(t)
	bin := pgtest.Walship(t)
	st := a.storage(t)
	proxy := sftptest.NewProxy(t, a.srv.Addr)
	viaProxy := []string{"--s3-endpoint", "http://" + proxy.Addr}

	t.Run("segment push cut half-way", func(t *testing.T) {
		p, name, seg := sftpSegment(t, t.TempDir(), 1, 16<<20)
		proxy.CutAfter(4 << 20)
		code, stderr := sftpWalship(t, bin, append(append([]string{"push"}, viaProxy...), p, name)...)
		if code != 1 {
			t.Fatalf("push over a connection cut half-way: exit %d, want 1\n%s", code, stderr)
		}
		if _, _, err := archive.StatWAL(t.Context(), st, name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after a failed push: got %v, want it missing", name, err)
		}
		proxy.CutAfter(0)
		if code, stderr := sftpWalship(t, bin, append(append([]string{"push"}, viaProxy...), p, name)...); code != 0 {
			t.Fatalf("push after the cut: exit %d\n%s", code, stderr)
		}
		if got := archivedWAL(t, st, name); !bytes.Equal(got, seg) {
			t.Errorf("archived segment differs from the pushed one")
		}
	})

	t.Run("backup killed half-way", func(t *testing.T) {
		c := pgtest.New(t, pgtest.Options{InitdbArgs: []string{"--wal-segsize=1"}})
		// About 100 MB of random hex, which zstd halves: a tar stream of
		// several 20 MiB parts.
		c.Exec(t, "CREATE TABLE big AS SELECT g, (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 30) i) AS pad "+
			"FROM generate_series(1, 100000) g")
		cmd := exec.Command(bin, "backup", "--archive", "s3://"+a.bucket+"/killed", "--dsn", c.ConnString(),
			"--fast-checkpoint", "--wal-timeout", "1m")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killed := openPrefix(t, a, "killed")
		deadline := time.Now().Add(time.Minute)
		for { // kill it once an upload holds parts
			temps, err := killed.ListTemp(t.Context(), "")
			if err != nil {
				t.Fatal(err)
			}
			if len(temps) > 0 && temps[0].Size > 0 {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("no multipart upload with parts within a minute\n%s", out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		cmd.Process.Kill()
		cmd.Wait()
		listed, err := killed.List(t.Context(), "backups")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range listed {
			if strings.HasSuffix(f.Name, ".json") {
				t.Errorf("the killed backup is listed: backups/%s", f.Name)
			}
		}
		// Until its in-progress marker is --stale-after old (1 minute at
		// least), the backup may be running: cleanup keeps its upload.
		code, stderr := sftpWalship(t, bin, "cleanup", "--archive", "s3://"+a.bucket+"/killed",
			"--temp-age", "1m", "--stale-after", "1m", "000000010000000000000001")
		if code != 0 {
			t.Fatalf("walship cleanup: exit %d\n%s", code, stderr)
		}
		if temps, err := killed.ListTemp(t.Context(), ""); err != nil || len(temps) == 0 {
			t.Fatalf("uploads after a cleanup while the backup may still run: got %v, %v; want them kept", temps, err)
		}
		time.Sleep(62 * time.Second)
		code, stderr = sftpWalship(t, bin, "cleanup", "--archive", "s3://"+a.bucket+"/killed",
			"--temp-age", "1m", "--stale-after", "1m", "000000010000000000000001")
		if code != 0 {
			t.Fatalf("walship cleanup: exit %d\n%s", code, stderr)
		}
		if !strings.Contains(stderr, "removed temporary files") {
			t.Errorf("cleanup does not say it removed the killed upload:\n%s", stderr)
		}
		if temps, err := killed.ListTemp(t.Context(), ""); err != nil || len(temps) != 0 {
			t.Errorf("uploads after cleanup: got %v, %v; want the killed backup's aborted", temps, err)
		}
	})

	t.Run("wrong credentials", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "credentials")
		writeFile(t, bad, "[default]\naws_access_key_id = "+s3test.AccessKey+"\naws_secret_access_key = wrong\n")
		p, name, _ := sftpSegment(t, t.TempDir(), 3, 1<<20)
		code, stderr := sftpWalship(t, bin, "push", "--s3-credentials-file", bad, p, name)
		if code != 1 || !strings.Contains(stderr, "fix AWS_SECRET_ACCESS_KEY or the profile's aws_secret_access_key") {
			t.Errorf("push with a wrong secret: exit %d, %q; want 1 and the fix", code, stderr)
		}
	})

	t.Run("missing bucket", func(t *testing.T) {
		p, name, _ := sftpSegment(t, t.TempDir(), 4, 1<<20)
		args := []string{"--archive", "s3://no-such-bucket/x"}
		code, stderr := sftpWalship(t, bin, append(append([]string{"push"}, args...), p, name)...)
		if code != 1 || !strings.Contains(stderr, `bucket "no-such-bucket" does not exist`) {
			t.Errorf("push into a missing bucket: exit %d, %q; want 1 and the fix", code, stderr)
		}
		// A waiting restore_command must not take it for "not found".
		ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append(append([]string{"wait"}, args...), "--poll", "200ms", name,
			filepath.Join(t.TempDir(), "RECOVERYXLOG"))...)
		out, err := cmd.CombinedOutput()
		if ctx.Err() == nil {
			t.Errorf("walship wait on a missing bucket exited (%v) instead of waiting:\n%s", err, out)
		}
		code, stderr = sftpWalship(t, bin, append(append([]string{"fetch"}, args...), name, filepath.Join(t.TempDir(), "RECOVERYXLOG"))...)
		if code >= 1 && code <= 125 {
			t.Errorf("walship fetch on a missing bucket: exit %d, which PostgreSQL reads as \"not found\"\n%s", code, stderr)
		}
	})
}

// openPrefix opens another archive of the test's bucket.
func openPrefix(t *testing.T, a *s3Archive, prefix string) *s3.Storage {
	t.Helper()
	st, err := s3.New(s3.Config{Bucket: a.bucket, Prefix: prefix, Endpoint: a.srv.Endpoint, PathStyle: true,
		Region: s3test.Region, CredentialsFile: a.creds, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
