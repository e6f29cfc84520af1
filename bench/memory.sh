#!/usr/bin/env bash
# Peak RSS of walship's calls, beside cp and pgBackRest, against issue 16's
# goals: push, wait and fetch at most 30 MB, walship tail at most 40 MB while
# a PostgreSQL 15 primary writes 40-50 MB/s of WAL.
#
#   bench/memory.sh                        # bin/walship
#   BASE=/tmp/walship-old bench/memory.sh  # and another build, in the same rounds
#   ROUNDS=5 TAIL_ROUNDS=3 LOAD=60s RATE=440 bench/memory.sh
#
# Peak RSS is GNU time's %M for a call (the kernel's maxrss of the process:
# text pages touched plus the heap and stacks at their highest), VmHWM from
# /proc for the tail daemon, read just before it is stopped. MB are 10^6
# bytes, as in the goals. Every call runs the way PostgreSQL makes it: one
# process per file, %p deleted before each restore.
#
# Inputs: 16 MiB segments of pgbench WAL (blank filler columns: compresses
# to about 10 %) and of rows of random bytes (incompressible), generated
# here on a throw-away cluster: pgBackRest refuses WAL of a system other than
# its stanza's, so the segments of bench/run's cache (another cluster) would
# not serve for its rows. The tail's load is pgbench running inserts of rows
# of 1 KiB of random bytes at RATE transactions a second (100 rows each, so
# 440 a second is about 48 MB/s of WAL), with walship push as the
# archive_command, into the archive the tail ships to.
#
# Settings (environment): WALSHIP (bin/walship), BASE (none), ROUNDS (3),
# TAIL_ROUNDS (2), LOAD (40s), RATE (440), TAIL_MODES ("zstd none"),
# GCTRACE=1 (keep each tail's GODEBUG=gctrace=1 log in $OUT), WORK
# (/var/tmp/walship-memory), PGBIN (/usr/lib/postgresql/15/bin), PGPORT
# (55447). Runs as root (PostgreSQL and the tail run as postgres).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WALSHIP=${WALSHIP:-$REPO/bin/walship}
BASE=${BASE:-}
ROUNDS=${ROUNDS:-3}
TAIL_ROUNDS=${TAIL_ROUNDS:-2}
LOAD=${LOAD:-40s}
RATE=${RATE:-440}
TAIL_MODES=${TAIL_MODES:-zstd none}
WORK=${WORK:-/var/tmp/walship-memory}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGPORT=${PGPORT:-55447}
PGDATA=$WORK/pgdata
SOCK=$WORK/run
SRC=$WORK/src
OUT=$WORK/results/$(date -u +%Y%m%dT%H%M%SZ)
TA=$WORK/tail-archive
PGBR_CONF=$WORK/pgbackrest.conf

log() { printf '== %s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'memory: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (runuser -u postgres)"
[[ -x $PGBIN/initdb ]] || die "no PostgreSQL 15 in $PGBIN"
[[ -x $WALSHIP ]] || die "no $WALSHIP: run make build"
[[ -x /usr/bin/time ]] || die "no GNU time in /usr/bin/time (apt-get install time)"
[[ -z $BASE || -x $BASE ]] || die "BASE=$BASE is not executable"
command -v pgbackrest >/dev/null || log "no pgbackrest: its rows are left out"
LOAD_S=${LOAD%s}
[[ $LOAD_S =~ ^[0-9]+$ ]] || die "LOAD=$LOAD: give whole seconds, such as 40s"

install -d -o postgres -g postgres "$WORK" "$SOCK" "$OUT"
# Copies the postgres user can run, whatever the permissions on the way to
# the repository.
install -m 755 "$WALSHIP" "$WORK/walship"
BINS=("$WORK/walship")
NAMES=(walship)
if [[ -n $BASE ]]; then
	install -m 755 "$BASE" "$WORK/walship-base"
	BINS+=("$WORK/walship-base")
	NAMES+=(base)
fi

# ---------------------------------------------------------------- PostgreSQL
as_pg() { runuser -u postgres -- "$@"; }
psql_() { as_pg "$PGBIN/psql" -X -q -At -h "$SOCK" -p "$PGPORT" -v ON_ERROR_STOP=1 -d postgres "$@"; }
pg_stop() {
	as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1 || return 0
	as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 120 stop >/dev/null
}
cleanup() {
	[[ -n ${tail_pid:-} ]] && kill "$tail_pid" 2>/dev/null || true
	[[ -n ${load_pid:-} ]] && kill "$load_pid" 2>/dev/null || true
	pg_stop || true
}
trap cleanup EXIT

log "initdb $PGDATA (16 MiB segments, archive_command walship push into $TA)"
pg_stop
rm -rf "$PGDATA" "$TA"
install -d -o postgres -g postgres -m 700 "$PGDATA"
install -d -o postgres -g postgres "$TA"
as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust --wal-segsize=16 >/dev/null
cat >>"$PGDATA/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$SOCK'
wal_level = replica
archive_mode = on
archive_command = '$WORK/walship push --archive $TA %p %f'
max_wal_size = '4GB'
checkpoint_timeout = '30s'
shared_buffers = '256MB'
synchronous_commit = off
autovacuum = off
EOF
touch "$WORK/postgres.log" && chown postgres: "$WORK/postgres.log"
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/postgres.log" -w -t 120 start >/dev/null

segno() { psql_ -c "select (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint / (16*1024*1024)"; }
segname() { printf '%08X%08X%08X' 1 $(($1 / 256)) $(($1 % 256)); }
lsn_bytes() { psql_ -c "select (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint"; }

# gen KIND: one whole segment of KIND's WAL in $SRC/KIND.
gen() {
	local kind=$1
	psql_ -c "checkpoint" -c "select pg_switch_wal()" >/dev/null
	local first
	first=$(segno)
	while (($(segno) <= first)); do
		case $kind in
		pgbench) as_pg "$PGBIN/pgbench" -n -h "$SOCK" -p "$PGPORT" -c 2 -j 2 -T 3 postgres >/dev/null ;;
		random) psql_ -c "insert into rnd select gen_random_bytes(1024) from generate_series(1, 10000)" ;;
		esac
	done
	mkdir -p "$SRC/$kind"
	cp "$PGDATA/pg_wal/$(segname "$first")" "$SRC/$kind/"
}
log "generating a segment of pgbench WAL and one of random WAL"
rm -rf "$SRC"
as_pg "$PGBIN/pgbench" -q -i -s 10 -h "$SOCK" -p "$PGPORT" postgres >/dev/null 2>&1
psql_ -c "create extension pgcrypto" -c "create table rnd (payload bytea)"
gen pgbench
gen random
chmod -R a+rX "$SRC"

if command -v pgbackrest >/dev/null; then
	cat >"$PGBR_CONF" <<EOF
[global]
repo1-path=$WORK/pgbackrest
lock-path=$WORK/pgbackrest-lock
log-path=$WORK/pgbackrest-log
log-level-console=warn
log-level-file=off
start-fast=y

[mem]
pg1-path=$PGDATA
pg1-socket-path=$SOCK
pg1-port=$PGPORT
EOF
	rm -rf "$WORK/pgbackrest"
	install -d -o postgres -g postgres "$WORK/pgbackrest" "$WORK/pgbackrest-lock" "$WORK/pgbackrest-log"
	as_pg pgbackrest --config="$PGBR_CONF" --stanza=mem stanza-create >/dev/null
fi
pgbr() { as_pg pgbackrest --config="$PGBR_CONF" --stanza=mem "$@"; }

# ---------------------------------------------------------------- one calls
# rss LABEL CMD...: run CMD as postgres under GNU time, append its peak RSS
# (KiB) to $OUT/LABEL.
rss() {
	local label=$1
	shift
	as_pg /usr/bin/time -f %M -o "$OUT/.time" "$@" >/dev/null 2>"$OUT/.err" ||
		{ cat "$OUT/.err" >&2; die "$label: $* failed"; }
	tail -n 1 "$OUT/.time" >>"$OUT/$label"
}

A=$WORK/archive
D=$WORK/restore
install -d -o postgres -g postgres "$D"
# An archive per compression holding both segments, for the restore rows.
for c in zstd none; do
	rm -rf "$A-$c"
	install -d -o postgres -g postgres "$A-$c"
	for k in pgbench random; do
		f=$(ls "$SRC/$k")
		as_pg "$WORK/walship" push --archive "$A-$c" --compress "$c" "$SRC/$k/$f" "$f"
	done
done

for ((r = 1; r <= ROUNDS; r++)); do
	log "one-shot calls, round $r of $ROUNDS"
	for k in pgbench random; do
		f=$(ls "$SRC/$k")
		for i in "${!BINS[@]}"; do
			b=${BINS[$i]} n=${NAMES[$i]}
			for c in zstd none; do
				rm -rf "$A"
				install -d -o postgres -g postgres "$A"
				# A push into an archive set up already: walship.json stays.
				as_pg "$b" push --archive "$A" "$SRC/pgbench/$(ls "$SRC/pgbench")" "$(ls "$SRC/pgbench")" 2>/dev/null
				rm -rf "$A/wal"
				rss "$n|push --compress $c|$k" "$b" push --archive "$A" --compress "$c" "$SRC/$k/$f" "$f"
				rm -f "$D/RECOVERYXLOG"
				rss "$n|wait, restoring $c|$k" "$b" wait --archive "$A-$c" "$f" "$D/RECOVERYXLOG"
				rm -f "$D/RECOVERYXLOG"
				rss "$n|fetch, restoring $c|$k" "$b" fetch --archive "$A-$c" "$f" "$D/RECOVERYXLOG"
			done
		done
		rm -rf "$A"
		install -d -o postgres -g postgres "$A"
		rss "cp|push|$k" cp "$SRC/$k/$f" "$A/$f"
		rm -f "$D/RECOVERYXLOG"
		rss "cp|restore|$k" cp "$A/$f" "$D/RECOVERYXLOG"
		if command -v pgbackrest >/dev/null; then
			for c in zst none; do
				rm -rf "$WORK"/pgbackrest/archive/mem/*-1/0000*
				rss "pgbackrest|archive-push --compress-type=$c|$k" pgbackrest --config="$PGBR_CONF" --stanza=mem \
					--compress-type="$c" archive-push "$SRC/$k/$f"
				rm -f "$D/RECOVERYXLOG"
				rss "pgbackrest|archive-get ($c)|$k" pgbackrest --config="$PGBR_CONF" --stanza=mem \
					archive-get "$f" "$D/RECOVERYXLOG"
			done
		fi
	done
done

# ---------------------------------------------------------------- the tail
cat >"$WORK/load.sql" <<EOF
insert into rnd select gen_random_bytes(1024) from generate_series(1, 100);
EOF
chown postgres: "$WORK/load.sql"
DSN="host=$SOCK port=$PGPORT user=postgres dbname=postgres"

# tail_run BIN NAME MODE: the tail's VmHWM (KiB) under LOAD of load, to
# $OUT/NAME|tail --compress MODE|random, and the WAL rate to $OUT/.rates.
tail_run() {
	local b=$1 n=$2 mode=$3
	psql_ -c "truncate rnd" -c "checkpoint" >/dev/null
	local env=()
	[[ -n ${GCTRACE:-} ]] && env=(GODEBUG=gctrace=1)
	as_pg env "${env[@]}" WALSHIP_LOG_LEVEL=warn sh -c 'echo $$ >"$0"; exec "$@"' "$OUT/.tailpid" \
		"$b" tail --archive "$TA" --pgdata "$PGDATA" --dsn "$DSN" --compress "$mode" \
		2>"$OUT/tail-$n-$mode-$(date +%s).log" &
	tail_pid=$!
	sleep 2
	local pid lsn0 lsn1 t0 t1
	pid=$(cat "$OUT/.tailpid")
	lsn0=$(lsn_bytes) t0=$(date +%s.%N)
	as_pg "$PGBIN/pgbench" -n -h "$SOCK" -p "$PGPORT" -f "$WORK/load.sql" -c 2 -j 2 -R "$RATE" -T "$LOAD_S" postgres \
		>"$OUT/.pgbench" 2>&1 &
	load_pid=$!
	wait "$load_pid" || { cat "$OUT/.pgbench" >&2; die "pgbench failed"; }
	load_pid=
	lsn1=$(lsn_bytes) t1=$(date +%s.%N)
	sleep 1 # the last poll ships what the load left
	grep VmHWM "/proc/$pid/status" | awk '{print $2}' >>"$OUT/$n|tail --compress $mode|random"
	kill -TERM "$pid"
	wait "$tail_pid" 2>/dev/null || true
	tail_pid=
	awk -v a="$lsn0" -v b="$lsn1" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.1f\n", (b - a) / (t1 - t0) / 1e6 }' >>"$OUT/.rates"
	rm -rf "$TA/wal"/*.tail
}
for ((r = 1; r <= TAIL_ROUNDS; r++)); do
	for mode in $TAIL_MODES; do
		for i in "${!BINS[@]}"; do
			log "tail --compress $mode (${NAMES[$i]}) under $LOAD of load at $RATE tx/s, round $r of $TAIL_ROUNDS"
			tail_run "${BINS[$i]}" "${NAMES[$i]}" "$mode"
		done
	done
done

# ---------------------------------------------------------------- table
goal() {
	case $1 in
	*tail*) echo 40 ;;
	push* | wait* | fetch*) echo 30 ;;
	*) echo – ;;
	esac
}
# stat FILE: "median (max)" in MB of the KiB figures in FILE.
stat() { sort -n "$1" | awk '{ v[NR] = $1 * 1024 / 1e6 } END { printf "%.1f (%.1f)", v[int((NR + 1) / 2)], v[NR] }'; }
{
	echo "Peak RSS, MB (10^6 bytes), median (max) of $ROUNDS calls; tail: $TAIL_ROUNDS runs of ${LOAD_S} s"
	echo "tail load: WAL at $(sort -n "$OUT/.rates" | awk '{v[NR]=$1} END {printf "%.1f-%.1f", v[1], v[NR]}') MB/s (rows of random bytes), --interval 200ms"
	echo "walship: $("$WALSHIP" --version)${BASE:+; base: $("$BASE" --version)}"
	echo
	if [[ -n $BASE ]]; then
		echo "| call | WAL | walship | base | goal |"
		echo "|---|---|---|---|---|"
	else
		echo "| call | WAL | walship | goal |"
		echo "|---|---|---|---|"
	fi
	for f in "$OUT"/walship\|*; do
		IFS='|' read -r _ call kind <<<"${f#"$OUT"/}"
		row="| walship $call | $kind | $(stat "$f")"
		[[ -n $BASE ]] && row+=" | $(stat "$OUT/base|$call|$kind")"
		echo "$row | $(goal "$call") |"
	done
	for f in "$OUT"/cp\|* "$OUT"/pgbackrest\|*; do
		[[ -e $f ]] || continue
		IFS='|' read -r tool call kind <<<"${f#"$OUT"/}"
		row="| $tool $call | $kind | $(stat "$f")"
		[[ -n $BASE ]] && row+=" | "
		echo "$row | – |"
	done
} | tee "$OUT/table.md"
echo "results: $OUT" >&2
