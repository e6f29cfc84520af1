#!/usr/bin/env bash
# Incremental backups (PostgreSQL 17+) against full ones, on one pgbench
# database: each round updates 5 % of pgbench_accounts (a contiguous range
# of aids, a different one each round), then takes walship backup
# --incremental (on the newest backup: the previous round's full one) and
# walship backup (full) in turn, and restores the chain (full +
# incremental, reconstructed in one pass) and the full backup of the same
# moment in turn. pg_combinebackup is not in the npm packages the other
# majors come from, so there is no row for it.
#
# Needs root (runuser), the PostgreSQL 17 server from .ci/pg-majors, and
# pgbench and psql from Debian's PostgreSQL 15 (they talk to 17 as well).
#
# Environment:
#   WORK=/var/tmp/walship-bench-incr   work dir (the database is kept and reused)
#   SCALE=65        pgbench scale: 65 makes about 1 GB
#   ROUNDS=3        rounds; each times every step once, in turn
#   PGBIN=(17 from .ci/pg-majors list)  CLIBIN=/usr/lib/postgresql/15/bin  PGPORT=55451
#   REGEN=1         build the database again
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/var/tmp/walship-bench-incr}
SCALE=${SCALE:-65}
ROUNDS=${ROUNDS:-3}
PGBIN=${PGBIN:-$("$REPO/.ci/pg-majors" list | awk '$1 == 17 {print $2}')}
CLIBIN=${CLIBIN:-/usr/lib/postgresql/15/bin}
PGPORT=${PGPORT:-55451}
PGDATA=$WORK/pgdata
SOCK=$WORK/run
ARCH=$WORK/archive
BIN=$WORK/bin/walship
OUT=$WORK/results.txt

log() { printf '== %s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root"
[[ -x $PGBIN/initdb ]] || die "no PostgreSQL 17 in '$PGBIN': run .ci/pg-majors install"
[[ -x $CLIBIN/pgbench ]] || die "no pgbench in $CLIBIN"

as_pg() { runuser -u postgres -- "$@"; }
psql_() { as_pg "$CLIBIN/psql" -X -q -At -h "$SOCK" -p "$PGPORT" -d postgres -v ON_ERROR_STOP=1 "$@"; }
pg_stop() { as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true; }
trap pg_stop EXIT

mkdir -p "$WORK/bin"
(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$BIN" ./cmd/walship)
chmod 755 "$WORK" "$WORK/bin"

if [[ ${REGEN:-0} == 1 || ! -f $PGDATA/PG_VERSION ]]; then
	pg_stop
	rm -rf "$PGDATA" "$ARCH"
	install -d -o postgres -g postgres -m 700 "$PGDATA" "$ARCH" "$SOCK"
	as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust --no-sync >/dev/null
	echo "host replication all 127.0.0.1/32 trust" >>"$PGDATA/pg_hba.conf"
	cat >>"$PGDATA/postgresql.conf" <<EOF2
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$SOCK'
wal_level = replica
max_wal_senders = 5
archive_mode = on
archive_command = '$BIN push --archive $ARCH %p %f'
summarize_wal = on
shared_buffers = 256MB
max_wal_size = 4GB
EOF2
	touch "$WORK/postgres.log" && chown postgres: "$WORK/postgres.log"
	as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/postgres.log" -w start >/dev/null
	log "pgbench -i -s $SCALE"
	as_pg "$CLIBIN/pgbench" -i -q -s "$SCALE" -h "$SOCK" -p "$PGPORT" postgres >/dev/null 2>&1
	psql_ -c "CHECKPOINT"
else
	as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/postgres.log" -w start >/dev/null
fi
dbsize=$(psql_ -c "SELECT pg_size_pretty(sum(pg_database_size(oid))) FROM pg_database")
log "database: $dbsize on disk"

dsn="host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres sslmode=disable"
t() {
	local name=$1 start end
	shift
	sync
	start=$(date +%s.%N)
	"$@" >/dev/null
	end=$(date +%s.%N)
	printf '%-34s %6.2f s\n' "$name" "$(echo "$end - $start" | bc)" | tee -a "$OUT"
}
settle() {
	psql_ -c "SELECT pg_switch_wal()" >/dev/null
	until [[ $(psql_ -c "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'") == 0 ]]; do
		sleep 0.2
	done
}
newest() { ls "$ARCH/backups" | grep -v '\.' | sort | tail -n1; }
size() { printf '%-34s %6s\n' "$1" "$(du -sh "$2" | cut -f1)" | tee -a "$OUT"; }

: >"$OUT"
echo "database $dbsize (pgbench -s $SCALE), PostgreSQL 17, $(nproc) CPUs, $(date -u)" | tee -a "$OUT"
settle
"$BIN" backup --archive "$ARCH" --dsn "$dsn" --fast-checkpoint >/dev/null # the first parent
rows=$((SCALE * 100000))
for round in $(seq "$ROUNDS"); do
	echo "-- round $round" | tee -a "$OUT"
	rm -rf "$WORK/r-chain" "$WORK/r-full"
	lo=$(( (round - 1) % 20 * rows / 20 ))
	t "update 5 % of pgbench_accounts" psql_ -c "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid > $lo AND aid <= $lo + $rows / 20"
	settle
	t "walship backup --incremental" "$BIN" backup --archive "$ARCH" --dsn "$dsn" --fast-checkpoint --incremental
	incr=$(newest)
	size "  stored" "$ARCH/backups/$incr"
	settle
	t "walship backup (full)" "$BIN" backup --archive "$ARCH" --dsn "$dsn" --fast-checkpoint
	full=$(newest)
	size "  stored" "$ARCH/backups/$full"
	t "walship restore (chain of 2)" "$BIN" restore --archive "$ARCH" --pgdata "$WORK/r-chain" --backup "$incr"
	t "walship restore (full)" "$BIN" restore --archive "$ARCH" --pgdata "$WORK/r-full" --backup "$full"
	"$BIN" expire --archive "$ARCH" --keep 1 >/dev/null
done
python3 "$REPO/bench/summary.py" "$OUT" \
	"walship backup --incremental" "walship backup (full)" \
	"walship restore (chain of 2)" "walship restore (full)" | tee -a "$OUT"
log "results in $OUT"
