package pgtest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Adopt makes a cluster around a data directory that fill creates, such as
// a restore from a backup: fill gets the path, which does not exist yet, and
// its parent, which it may write. Adopt then hands the directory to the
// PostgreSQL user, gives the cluster its own port and socket directory
// (through the pgtest.conf that postgresql.conf includes; a data directory
// copied from a pgtest cluster has that include already, other ones get it
// added), appends opts.Conf to postgresql.conf and returns the cluster
// stopped. InitdbArgs and NoStart are ignored.
func Adopt(t testing.TB, opts Options, fill func(dataDir string)) *Cluster {
	t.Helper()
	c := newCluster(t)
	fill(c.DataDir)
	if _, err := os.Stat(c.DataDir); err != nil {
		t.Fatalf("adopt: %v", err)
	}
	if err := os.Chmod(c.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	Chown(t, c.DataDir)
	conf, err := os.ReadFile(filepath.Join(c.DataDir, "postgresql.conf"))
	if err != nil {
		t.Fatalf("adopt: %v", err)
	}
	c.writePortConf(t)
	if !slices.Contains(strings.Split(string(conf), "\n"), "include = '"+portConf+"'") {
		c.AppendConf(t, "include = '"+portConf+"'")
	}
	c.AppendConf(t, opts.Conf...)
	return c
}
