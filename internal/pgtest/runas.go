package pgtest

import (
	"os/exec"
	"testing"
)

// UserCommand returns a command, not yet started, that runs name as the user
// PostgreSQL runs as (see Cluster.User), in dir, which is also its HOME,
// with env added to an environment cleared of inherited PG* variables: for
// programs that run PostgreSQL themselves, such as Patroni, or that must
// create files that user can read. A bare name of a program in BinDir runs
// from there; any other name is looked up in PATH.
func UserCommand(t testing.TB, dir string, env []string, name string, args ...string) *exec.Cmd {
	t.Helper()
	return command(t, dir, env, name, args...)
}
