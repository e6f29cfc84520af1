#!/usr/bin/env bash
# Base backup and restore of one database, side by side: walship backup
# (compressed by the server, the default, and by walship) and restore, pg_basebackup -Ft (plain and client-side zstd) with tar -x, and
# pgBackRest (zstd) when it is installed. Every tool reads the same running
# cluster and writes to the same file system; the WAL of the backups is
# archived by archive_command (walship push, and pgbackrest archive-push
# when pgBackRest runs), so every backup waits for its WAL alike.
#
# Needs root (runuser), PostgreSQL 15 in $PGBIN, Go, and optionally
# pgbackrest (apt-get install -y pgbackrest).
#
# Environment:
#   WORK=/var/tmp/walship-bench-backup  work dir (the database is kept and reused)
#   SCALE=65        pgbench scale: 65 makes about 1 GB
#   ROUNDS=3        rounds; each times every tool once, in turn
#   PGBIN=/usr/lib/postgresql/15/bin   PGPORT=55441
#   PGBACKREST=1    0 skips pgBackRest
#   REGEN=1         build the database again
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/var/tmp/walship-bench-backup}
SCALE=${SCALE:-65}
ROUNDS=${ROUNDS:-3}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGPORT=${PGPORT:-55441}
PGBACKREST=${PGBACKREST:-1}
PGDATA=$WORK/pgdata
SOCK=$WORK/run
ARCH=$WORK/archive
BIN=$WORK/bin/walship
OUT=$WORK/results.txt

log() { printf '== %s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root"
[[ -x $PGBIN/initdb ]] || die "no PostgreSQL in $PGBIN"
if [[ $PGBACKREST == 1 ]] && ! command -v pgbackrest >/dev/null; then
	log "pgbackrest not installed (apt-get install -y pgbackrest): skipping it"
	PGBACKREST=0
fi

as_pg() { runuser -u postgres -- "$@"; }
psql_() { as_pg "$PGBIN/psql" -X -q -At -h "$SOCK" -p "$PGPORT" -d postgres -v ON_ERROR_STOP=1 "$@"; }
pg_stop() { as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true; }
trap pg_stop EXIT

mkdir -p "$WORK/bin"
(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$BIN" ./cmd/walship)
chmod 755 "$WORK" "$WORK/bin"

archive_command="$BIN push --archive $ARCH %p %f"
if [[ $PGBACKREST == 1 ]]; then
	archive_command="$archive_command && pgbackrest --config=$WORK/pgbackrest.conf --stanza=bench archive-push %p"
	cat >"$WORK/pgbackrest.conf" <<EOF
[global]
repo1-path=$WORK/pgbackrest
compress-type=zst
compress-level=1
start-fast=y
log-level-console=warn
log-path=$WORK/pgbackrest-log
lock-path=$WORK/pgbackrest-lock

[bench]
pg1-path=$PGDATA
pg1-socket-path=$SOCK
pg1-port=$PGPORT
EOF
	chown postgres: "$WORK/pgbackrest.conf"
fi

if [[ ${REGEN:-0} == 1 || ! -f $PGDATA/PG_VERSION ]]; then
	pg_stop
	rm -rf "$PGDATA" "$ARCH" "$WORK/pgbackrest"
	install -d -o postgres -g postgres -m 700 "$PGDATA" "$ARCH" "$SOCK" "$WORK/pgbackrest" \
		"$WORK/pgbackrest-log" "$WORK/pgbackrest-lock"
	as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust --no-sync >/dev/null
	echo "host replication all 127.0.0.1/32 trust" >>"$PGDATA/pg_hba.conf"
	cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$SOCK'
wal_level = replica
max_wal_senders = 5
archive_mode = on
archive_command = '$archive_command'
shared_buffers = 256MB
max_wal_size = 4GB
EOF
	touch "$WORK/postgres.log" && chown postgres: "$WORK/postgres.log"
	as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/postgres.log" -w start >/dev/null
	log "pgbench -i -s $SCALE"
	as_pg "$PGBIN/pgbench" -i -q -s "$SCALE" -h "$SOCK" -p "$PGPORT" postgres >/dev/null 2>&1
	psql_ -c "CHECKPOINT"
	if [[ $PGBACKREST == 1 ]]; then
		as_pg pgbackrest --config="$WORK/pgbackrest.conf" --stanza=bench stanza-create
	fi
else
	as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/postgres.log" -w start >/dev/null
fi
dbsize=$(psql_ -c "SELECT pg_size_pretty(sum(pg_database_size(oid))) FROM pg_database")
log "database: $dbsize on disk"

dsn="host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres sslmode=disable"
# t NAME CMD...: time CMD, print "NAME seconds".
t() {
	local name=$1 start end
	shift
	sync
	start=$(date +%s.%N)
	"$@" >/dev/null
	end=$(date +%s.%N)
	printf '%-28s %6.2f s\n' "$name" "$(echo "$end - $start" | bc)" | tee -a "$OUT"
}
# settle waits until the archiver has no backlog, so no backup waits for WAL
# that an earlier step produced.
settle() {
	psql_ -c "SELECT pg_switch_wal()" >/dev/null
	until [[ $(psql_ -c "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'") == 0 ]]; do
		sleep 0.2
	done
}
size() { printf '%-28s %6s\n' "$1" "$(du -sh "$2" | cut -f1)" | tee -a "$OUT"; }
fresh() { rm -rf "$1"; install -d -o postgres -g postgres -m 700 "$1"; }

: >"$OUT"
echo "database $dbsize (pgbench -s $SCALE), $(nproc) CPUs, $(date -u)" | tee -a "$OUT"
for round in $(seq "$ROUNDS"); do
	echo "-- round $round" | tee -a "$OUT"
	fresh "$WORK/bb" && fresh "$WORK/bbz"
	rm -rf "$WORK/r-walship" "$WORK/r-tar" "$WORK/r-tarz" "$WORK/r-pgbackrest"

	settle
	t "walship backup" "$BIN" backup --archive "$ARCH" --dsn "$dsn" --fast-checkpoint
	id=$(ls "$ARCH/backups" | grep -v '\.' | sort | tail -n1)
	size "  stored" "$ARCH/backups/$id"
	settle
	t "walship backup, client zstd" "$BIN" backup --archive "$ARCH" --dsn "$dsn" --fast-checkpoint --compress-on client
	size "  stored" "$ARCH/backups/$(ls "$ARCH/backups" | grep -v '\.' | sort | tail -n1)"
	settle
	t "pg_basebackup -Ft" as_pg "$PGBIN/pg_basebackup" -D "$WORK/bb" -Ft -X none -c fast --no-sync -d "$dsn"
	size "  stored" "$WORK/bb"
	settle
	t "pg_basebackup -Ft zstd" as_pg "$PGBIN/pg_basebackup" -D "$WORK/bbz" -Ft -X none -c fast --no-sync \
		--compress=client-zstd:1 -d "$dsn"
	size "  stored" "$WORK/bbz"
	if [[ $PGBACKREST == 1 ]]; then
		settle
		t "pgbackrest backup (full)" as_pg pgbackrest --config="$WORK/pgbackrest.conf" --stanza=bench --type=full backup
		size "  stored" "$(ls -d "$WORK"/pgbackrest/backup/bench/*F | sort | tail -n1)"
	fi

	t "walship restore" "$BIN" restore --archive "$ARCH" --pgdata "$WORK/r-walship" --backup "$id"
	install -d -m 700 "$WORK/r-tar" "$WORK/r-tarz"
	t "tar -x (pg_basebackup)" tar -xf "$WORK/bb/base.tar" -C "$WORK/r-tar"
	t "zstd -d | tar -x" sh -c "zstd -q -d -c '$WORK/bbz/base.tar.zst' | tar -xf - -C '$WORK/r-tarz'"
	if [[ $PGBACKREST == 1 ]]; then
		fresh "$WORK/r-pgbackrest"
		t "pgbackrest restore" as_pg pgbackrest --config="$WORK/pgbackrest.conf" --stanza=bench \
			--pg1-path="$WORK/r-pgbackrest" restore
		as_pg pgbackrest --config="$WORK/pgbackrest.conf" --stanza=bench --repo1-retention-full=1 expire >/dev/null
	fi
	t "walship verify" "$BIN" verify --archive "$ARCH"
	"$BIN" expire --archive "$ARCH" --keep 2 >/dev/null
done
python3 "$REPO/bench/summary.py" "$OUT" \
	"walship backup" "pg_basebackup -Ft" \
	"walship backup, client zstd" "pg_basebackup -Ft zstd" \
	"walship backup" "pgbackrest backup (full)" \
	"walship restore" "pgbackrest restore" | tee -a "$OUT"
log "results in $OUT"
