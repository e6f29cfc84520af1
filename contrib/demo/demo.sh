#!/usr/bin/env bash
# make demo: a primary archiving with walship push, a warm standby restoring
# with walship wait, a write load, the standby catching up, a failover with
# walship promote, and a check that nothing archived was lost. Everything
# lives under one directory, which it reports; everything it starts is
# stopped at the end, also on failure or Ctrl-C.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
src_bin=${WALSHIP_BIN:-$root/bin/walship}
[[ -x $src_bin ]] || { echo "demo: $src_bin not built: run make build" >&2; exit 1; }

pgbin=${WALSHIP_PG_BINDIR:-}
if [[ -z $pgbin ]]; then
	pgbin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	[[ -x $pgbin/initdb ]] || pgbin=$(pg_config --bindir 2>/dev/null || true)
fi
if [[ ! -x $pgbin/initdb ]]; then
	echo "demo: PostgreSQL server programs not found: install the Debian package postgresql (apt-get install postgresql), or set WALSHIP_PG_BINDIR" >&2
	exit 1
fi

dir=$(mktemp -d /tmp/walship-demo.XXXXXX)
chmod 755 "$dir"
run_as=()
if [[ $EUID -eq 0 ]]; then
	user=${WALSHIP_PG_USER:-postgres}
	id -u "$user" >/dev/null 2>&1 || { echo "demo: running as root needs the user $user to run PostgreSQL" >&2; exit 1; }
	run_as=(runuser -u "$user" --)
fi
pg() { "${run_as[@]}" env -u PGDATA "$@"; }

bin=$dir/walship
install -m 755 "$src_bin" "$bin"
mkdir -p "$dir/archive"
[[ $EUID -eq 0 ]] && chown "$user" "$dir" "$dir/archive"

free_port() {
	local p
	for p in $(seq "$1" $(($1 + 200))); do
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
	echo "demo: no free port" >&2
	exit 1
}
pport=$(free_port 55432)
sport=$(free_port $((pport + 1)))
trigger=$dir/walship.trigger

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
psqlp() { pg "$pgbin/psql" -X -q -At -h 127.0.0.1 -p "$pport" -U postgres -d postgres -c "$1"; }
psqls() { pg "$pgbin/psql" -X -q -At -h 127.0.0.1 -p "$sport" -U postgres -d postgres -c "$1"; }

cleanup() {
	for d in "$dir/standby" "$dir/primary"; do
		[[ -f $d/postmaster.pid ]] && pg "$pgbin/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
	done
	echo
	echo "demo: everything it started is stopped; its files are in $dir (remove with rm -rf $dir)"
}
trap cleanup EXIT

say "primary on port $pport, archiving with walship push into $dir/archive"
pg "$pgbin/initdb" -D "$dir/primary" -U postgres -A trust --wal-segsize=1 --no-sync >/dev/null
cat >>"$dir/primary/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pport
unix_socket_directories = '$dir'
wal_level = replica
archive_mode = on
archive_command = '$bin push --archive $dir/archive %p %f'
archive_timeout = 2s
EOF
echo "host replication all 127.0.0.1/32 trust" >>"$dir/primary/pg_hba.conf"
pg "$pgbin/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w start >/dev/null
grep "^archive_command" "$dir/primary/postgresql.conf"

say "warm standby on port $sport, in pg_standby mode (recovery.signal + walship wait)"
pg "$pgbin/pg_basebackup" -h 127.0.0.1 -p "$pport" -U postgres -D "$dir/standby" -c fast
cat >>"$dir/standby/postgresql.conf" <<EOF
port = $sport
restore_command = '$bin wait --archive $dir/archive --trigger $trigger %f %p %r'
recovery_end_command = 'rm -f $trigger'
hot_standby = on
recovery_prefetch = off
archive_command = '$bin push --archive $dir/archive %p %f'
EOF
pg touch "$dir/standby/recovery.signal"
psqlp "SELECT pg_switch_wal()" >/dev/null
pg "$pgbin/pg_ctl" -D "$dir/standby" -l "$dir/standby.log" -W start >/dev/null
for _ in $(seq 1 120); do psqls "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
grep "^restore_command" "$dir/standby/postgresql.conf"

say "write load on the primary: pgbench for 8 seconds"
pg "$pgbin/pgbench" -h 127.0.0.1 -p "$pport" -U postgres -i -s 2 -q postgres 2>&1 | tail -n 1
pg "$pgbin/pgbench" -h 127.0.0.1 -p "$pport" -U postgres -T 8 -c 2 -P 2 postgres 2>&1 | grep -E '^progress|^tps' || true

say "the standby catches up as segments are archived"
for _ in $(seq 1 6); do
	p=$(psqlp "SELECT pg_current_wal_lsn()")
	r=$(psqls "SELECT pg_last_wal_replay_lsn()")
	lag=$(psqlp "SELECT pg_wal_lsn_diff('$p', '$r')::bigint")
	printf 'primary at %-12s standby replayed %-12s lag %8s bytes, archived %s\n' "$p" "$r" "$lag" \
		"$(psqlp "SELECT last_archived_wal FROM pg_stat_archiver")"
	sleep 1
done

say "the primary fails (after archiving its last segment)"
psqlp "SELECT pg_switch_wal()" >/dev/null
want=$(psqlp "SELECT count(*) FROM pgbench_history")
last=$(psqlp "SELECT pg_walfile_name(pg_current_wal_lsn() - 1)")
for _ in $(seq 1 60); do
	[[ $(psqlp "SELECT last_archived_wal FROM pg_stat_archiver") == "$last" ]] && break
	sleep 0.5
done
pg "$pgbin/pg_ctl" -D "$dir/primary" -m immediate stop >/dev/null
echo "primary stopped with $want rows in pgbench_history, all archived"

say "failover: walship promote --trigger $trigger (smart)"
"$bin" promote --trigger "$trigger"
[[ $EUID -eq 0 ]] && chown "$user" "$trigger"
for _ in $(seq 1 120); do
	[[ $(psqls "SELECT pg_is_in_recovery()" 2>/dev/null) == f ]] && break
	sleep 0.5
done
[[ $(psqls "SELECT pg_is_in_recovery()") == f ]] || { echo "demo: the standby did not promote; see $dir/standby.log" >&2; exit 1; }
got=$(psqls "SELECT count(*) FROM pgbench_history")
tli=$(psqls "SELECT timeline_id FROM pg_control_checkpoint()")
echo "standby promoted: timeline $tli, $got rows in pgbench_history"
if [[ $got == "$want" ]]; then
	echo "demo: OK, nothing archived was lost ($got of $want rows)"
else
	echo "demo: FAILED, the promoted standby has $got rows, the primary archived $want" >&2
	exit 1
fi
