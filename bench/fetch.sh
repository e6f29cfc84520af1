#!/usr/bin/env bash
# WAL replay through restore_command, side by side: the same base backup is
# restored again and again and recovers the same archived WAL to its end,
# with, in turn:
#   walship fetch                 one segment per call
#   walship fetch --prefetch 8    a background fetch downloads ahead
#   pgbackrest archive-get        one segment per call
#   pgbackrest archive-get async  archive-async=y, process-max=2: its prefetch
# and, as the floor, the same WAL already in pg_wal with no restore_command.
# Each run is timed from pg_ctl start to the end of recovery (the server
# accepting connections after it promoted), and the WAL replayed is divided
# by that time. Every tool reads the same segments: the
# primary archives each with walship push and pgbackrest archive-push.
#
# Needs root (runuser), PostgreSQL 15 in $PGBIN, Go and pgbackrest
# (apt-get install -y pgbackrest).
#
# Environment:
#   WORK=/var/tmp/walship-bench-fetch   work dir (primary, archives and backup are kept)
#   SEGMENTS=150    WAL to replay, in 16 MiB segments
#   ROUNDS=3        rounds; each times every mode once, in turn
#   PGBIN=/usr/lib/postgresql/15/bin   PGPORT=55451
#   REGEN=1         build the primary, the backup and the WAL again
#   FLOOR=0         skip the floor run
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/var/tmp/walship-bench-fetch}
SEGMENTS=${SEGMENTS:-150}
ROUNDS=${ROUNDS:-3}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGPORT=${PGPORT:-55451}
PRIMARY=$WORK/primary
R=$WORK/replay
SOCK=$WORK/run
ARCH=$WORK/archive
BIN=$WORK/bin/walship
CONF=$WORK/backrest.conf
OUT=$WORK/results.txt

log() { printf '== %s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root"
[[ -x $PGBIN/initdb ]] || die "no PostgreSQL in $PGBIN"
command -v pgbackrest >/dev/null || die "pgbackrest is not installed: apt-get install -y pgbackrest"

as_pg() { runuser -u postgres -- "$@"; }
psql_() { as_pg "$PGBIN/psql" -X -q -At -h "$SOCK" -p "$PGPORT" -d postgres -v ON_ERROR_STOP=1 "$@"; }
stop() { as_pg "$PGBIN/pg_ctl" -D "$1" -m immediate -w stop >/dev/null 2>&1 || true; }
trap 'stop "$PRIMARY"; stop "$R"' EXIT

mkdir -p "$WORK/bin"
(cd "$REPO" && go build -tags urfave_cli_no_docs -o "$BIN" ./cmd/walship)
chmod 755 "$WORK" "$WORK/bin"
cat >"$CONF" <<EOF
[global]
repo1-path=$WORK/pgbackrest
compress-type=zst
compress-level=1
log-level-console=warn
log-path=$WORK/pgbackrest-log
lock-path=$WORK/pgbackrest-lock
spool-path=$WORK/pgbackrest-spool

[bench]
pg1-path=$PRIMARY
pg1-socket-path=$SOCK
pg1-port=$PGPORT
EOF
chown postgres: "$CONF"

if [[ ${REGEN:-0} == 1 || ! -f $WORK/backup-id ]]; then
	stop "$PRIMARY"
	rm -rf "$PRIMARY" "$ARCH" "$WORK"/pgbackrest* "$WORK/backup-id"
	install -d -o postgres -g postgres -m 700 "$PRIMARY" "$ARCH" "$SOCK" "$WORK/pgbackrest" \
		"$WORK/pgbackrest-log" "$WORK/pgbackrest-lock" "$WORK/pgbackrest-spool"
	as_pg "$PGBIN/initdb" -D "$PRIMARY" -U postgres -A trust --no-sync >/dev/null
	echo "host replication all 127.0.0.1/32 trust" >>"$PRIMARY/pg_hba.conf"
	cat >>"$PRIMARY/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$SOCK'
wal_level = replica
archive_mode = on
archive_command = '$BIN push --archive $ARCH %p %f && pgbackrest --config=$CONF --stanza=bench archive-push %p'
shared_buffers = 256MB
max_wal_size = 4GB
EOF
	touch "$WORK/primary.log" && chown postgres: "$WORK/primary.log"
	as_pg "$PGBIN/pg_ctl" -D "$PRIMARY" -l "$WORK/primary.log" -w start >/dev/null
	as_pg pgbackrest --config="$CONF" --stanza=bench stanza-create
	log "pgbench -i -s 20"
	as_pg "$PGBIN/pgbench" -i -q -s 20 -h "$SOCK" -p "$PGPORT" postgres >/dev/null 2>&1
	as_pg "$BIN" backup --archive "$ARCH" --dsn "host=$SOCK port=$PGPORT user=postgres dbname=postgres" \
		--fast-checkpoint --json >"$WORK/backup.json"
	python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <"$WORK/backup.json" >"$WORK/backup-id.tmp"
	start=$(psql_ -c "SELECT pg_current_wal_lsn()")
	log "pgbench load until $SEGMENTS segments of WAL are written"
	while [[ $(psql_ -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$start') < $SEGMENTS::numeric * 16777216") == t ]]; do
		as_pg "$PGBIN/pgbench" -n -c 4 -T 5 -h "$SOCK" -p "$PGPORT" postgres >/dev/null 2>&1
	done
	psql_ -c "SELECT pg_switch_wal()" >/dev/null
	until [[ $(psql_ -c "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'") == 0 ]]; do
		sleep 0.5
	done
	psql_ -c "SELECT pg_current_wal_lsn()" >"$WORK/end-lsn"
	stop "$PRIMARY"
	mv "$WORK/backup-id.tmp" "$WORK/backup-id"
fi
id=$(cat "$WORK/backup-id")
startlsn=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["start_lsn"])' <"$WORK/backup.json")
startwal=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["start_wal"])' <"$WORK/backup.json")
endlsn=$(cat "$WORK/end-lsn")
mib=$(python3 -c "
def lsn(s):
    hi, lo = s.split('/'); return (int(hi, 16) << 32) | int(lo, 16)
print((lsn('$endlsn') - lsn('$startlsn')) // (1 << 20))")

# fresh: restore the backup afresh into $R, with archiving off.
fresh() {
	stop "$R"
	rm -rf "$R" "$WORK/pgbackrest-spool"/*
	install -d -o postgres -g postgres -m 700 "$R"
	as_pg "$BIN" restore --archive "$ARCH" --pgdata "$R" --backup "$id" >/dev/null 2>&1
	echo "archive_mode = off" >>"$R/postgresql.auto.conf"
}

# timed NAME: start the server in $R, wait until recovery is over and it
# accepts connections (pg_ctl -w would return at the consistent point,
# earlier), stop it, and print the time and MiB/s.
timed() {
	local name=$1 start end
	: >"$WORK/replay.log" && chown postgres: "$WORK/replay.log"
	sync
	start=$(date +%s.%N)
	as_pg "$PGBIN/pg_ctl" -D "$R" -l "$WORK/replay.log" -W start >/dev/null
	until grep -q "database system is ready to accept connections" "$WORK/replay.log"; do
		grep -q "FATAL\|PANIC" "$WORK/replay.log" && die "$name: recovery failed; see $WORK/replay.log"
		sleep 0.02
	done
	end=$(date +%s.%N)
	psql_ -c "SELECT 1" >/dev/null
	stop "$R"
	python3 -c "t=$end-$start; print('%-34s %7.2f s %7.1f MiB/s' % ('$name', t, $mib/t))" | tee -a "$OUT"
}

# replay NAME RESTORE_COMMAND: recover all the archived WAL into a fresh
# restore of the backup with RESTORE_COMMAND.
replay() {
	fresh
	echo "restore_command = '$2'" >>"$R/postgresql.auto.conf"
	timed "$1"
	grep -q "archive recovery complete" "$WORK/replay.log" || die "$1: recovery did not complete; see $WORK/replay.log"
}

# floor: the same WAL replayed from pg_wal, where it is put (decompressed)
# beforehand, with no restore_command at all (crash recovery from the
# backup's backup_label): the time PostgreSQL itself needs to apply the WAL.
floor() {
	local f
	fresh
	rm -f "$R/recovery.signal"
	for f in $(ls "$ARCH/wal" | sed -n 's/^\([0-9A-F]\{24\}\)\(\.zst\)\{0,1\}$/\1/p'); do
		[[ $f < $startwal ]] && continue
		as_pg "$BIN" fetch --archive "$ARCH" --pgdata "$R" "$f" "$R/pg_wal/$f" 2>/dev/null
	done
	timed "floor: WAL in pg_wal already"
}

get="pgbackrest --config=$CONF --stanza=bench --pg1-path=$R"
: >"$OUT"
echo "replay of $mib MiB of pgbench WAL ($startlsn to $endlsn), $(nproc) CPUs, $(date -u)" | tee -a "$OUT"
for round in $(seq "$ROUNDS"); do
	echo "-- round $round" | tee -a "$OUT"
	replay "walship fetch" "$BIN fetch --archive $ARCH %f %p"
	replay "walship fetch --prefetch 8" "$BIN fetch --archive $ARCH --prefetch 8 %f %p"
	replay "pgbackrest archive-get" "$get archive-get %f \"%p\""
	replay "pgbackrest archive-get async" "$get --archive-async --process-max=2 archive-get %f \"%p\""
	[[ ${FLOOR:-1} == 0 ]] || floor
done
python3 "$REPO/bench/summary.py" "$OUT" \
	"walship fetch" "pgbackrest archive-get" \
	"walship fetch --prefetch 8" "pgbackrest archive-get async" \
	"walship fetch --prefetch 8" "walship fetch" | tee -a "$OUT"
log "results in $OUT"
