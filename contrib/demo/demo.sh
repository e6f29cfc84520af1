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

# Bold headings on a terminal only, and never with NO_COLOR set (no-color.org).
bold= plain=
if [[ -t 1 && -z ${NO_COLOR:-} ]]; then
	bold=$'\033[1m' plain=$'\033[0m'
fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
psqlp() { pg "$pgbin/psql" -X -q -At -h 127.0.0.1 -p "$pport" -U postgres -d postgres -c "$1"; }
psqls() { pg "$pgbin/psql" -X -q -At -h 127.0.0.1 -p "$sport" -U postgres -d postgres -c "$1"; }

cleanup() {
	pkill -TERM -f "^$bin tail" 2>/dev/null || true
	for d in "$dir/standby" "$dir/primary"; do
		[[ -f $d/postmaster.pid ]] && pg "$pgbin/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
	done
	echo
	echo "demo: everything it started is stopped; its files are in $dir (remove with rm -rf $dir)"
}
trap cleanup EXIT

say "primary on port $pport, archiving with walship push into $dir/archive"
echo "initdb --wal-segsize=1: 1 MiB WAL segments, so that the demo fills and archives segments in seconds; production clusters keep the default 16 MiB"
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

say "walship tail on the primary, every 200ms"
PGHOST=$dir PGPORT=$pport PGUSER=postgres pg "$bin" tail --archive "$dir/archive" --pgdata "$dir/primary" \
	--interval 200ms --log-every 5s 2>"$dir/tail.log" &
tail_pid=$!

say "base backup into the archive: walship backup"
pg "$bin" backup --archive "$dir/archive" --dsn "host=127.0.0.1 port=$pport user=postgres" --fast-checkpoint

say "warm standby on port $sport from it: walship restore --standby (recovery.signal + walship wait)"
pg "$bin" restore --archive "$dir/archive" --pgdata "$dir/standby" --standby --trigger "$trigger"
echo "port = $sport" | pg tee -a "$dir/standby/postgresql.conf" >/dev/null
pg "$pgbin/pg_ctl" -D "$dir/standby" -l "$dir/standby.log" -W start >/dev/null
for _ in $(seq 1 120); do psqls "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
grep "^restore_command" "$dir/standby/postgresql.auto.conf"

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

say "the primary dies (SIGKILL, with the tail daemon) during a stream of numbered commits"
psqlp "CREATE SEQUENCE acks_seq; CREATE TABLE acks (id bigint PRIMARY KEY)"
echo "INSERT INTO acks VALUES (nextval('acks_seq'));" | pg tee "$dir/acks.sql" >/dev/null
# One client, so the k-th acknowledged transaction of pgbench's log is id k.
(cd "$dir" && pg "$pgbin/pgbench" -h 127.0.0.1 -p "$pport" -U postgres -n -c 1 -T 30 -l --log-prefix=ackslog \
	-f "$dir/acks.sql" postgres >"$dir/pgbench-acks.out" 2>&1) &
bench_pid=$!
sleep 5
# The pids first, then the time and both signals at once, with no program
# started in between: commits acknowledged after kill_time were in flight.
mapfile -t victims < <(pgrep -f "^$bin tail" || true)
victims+=("$(head -n 1 "$dir/primary/postmaster.pid")")
kill_time=${EPOCHREALTIME:-$(date +%s.%N)}
kill -KILL "${victims[@]}"
kill_time=${kill_time/,/.} # EPOCHREALTIME has the locale's decimal point
printf '%s\n' "$kill_time" >"$dir/kill-time"
wait "$bench_pid" 2>/dev/null || true
wait "$tail_pid" 2>/dev/null || true
acked=$(cat "$dir"/ackslog.* 2>/dev/null | wc -l)
echo "primary killed with $acked commits acknowledged to the client"

say "failover: walship promote --trigger $trigger (smart)"
"$bin" promote --trigger "$trigger"
[[ $EUID -eq 0 ]] && chown "$user" "$trigger"
for _ in $(seq 1 120); do
	[[ $(psqls "SELECT pg_is_in_recovery()" 2>/dev/null) == f ]] && break
	sleep 0.5
done
[[ $(psqls "SELECT pg_is_in_recovery()") == f ]] || { echo "demo: the standby did not promote; see $dir/standby.log" >&2; exit 1; }
tli=$(psqls "SELECT timeline_id FROM pg_control_checkpoint()")
have=$(psqls "SELECT coalesce(max(id), 0) FROM acks")
missing=$(psqls "SELECT $have - count(*) FROM acks")
echo "standby promoted on timeline $tli with acknowledged commits 1..$have ($missing missing in between)"
# Commits past the standby's last are lost. From pgbench's log (epoch seconds
# in field 5, microseconds in 6): how many, the age at the kill of the oldest
# of them in microseconds (negative: acknowledged after the signals were
# sent), and how many were acknowledged after.
read -r lost_n oldest_us lost_after < <(cat "$dir"/ackslog.* | awk -v have="$have" -v kt="$kill_time" '
	BEGIN { split(kt, k, "."); kt_us = k[1] * 1000000 + substr(k[2] "000000", 1, 6) }
	{ n++; if (n > have) { age = kt_us - ($5 * 1000000 + $6); if (c == 0 || age > oldest) oldest = age; if (age < 0) after++; c++ } }
	END { printf "%d %d %d\n", c, oldest, after }')
ms() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }
if ((lost_n == 0)); then
	echo "lost no acknowledged commits"
elif ((oldest_us >= 0)); then
	inflight=
	((lost_after > 0)) && inflight=" ($lost_after of them acknowledged after the kill was sent, in flight)"
	echo "lost $lost_n acknowledged commits$inflight; the oldest lost commit was acknowledged $(ms "$oldest_us") ms before the primary was killed"
else
	echo "lost $lost_n acknowledged commits; the oldest lost commit was acknowledged $(ms $((-oldest_us))) ms after the kill time was taken (in flight when the kill was sent)"
fi
if [[ $missing == 0 ]] && ((oldest_us <= 500000)); then
	echo "demo: OK, no commit acknowledged more than 500 ms (tail interval + 300 ms) before the primary died was lost"
else
	echo "demo: FAILED, see $dir" >&2
	exit 1
fi
