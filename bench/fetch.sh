#!/usr/bin/env bash
# WAL replay through restore_command, side by side: the same base backup is
# restored again and again and recovers the same archived WAL to its end,
# with, in turn (MODES, space-separated, picks and orders them):
#   cp          cp from a directory of plain segments (the usual restore_command)
#   fetch       walship fetch with its defaults, zstd archive
#   fetch-raw   walship fetch with its defaults, archive pushed --compress none
#   fetch0      walship fetch --prefetch 0 (one segment per call), zstd archive
#   prefetchN   walship fetch --prefetch N, zstd archive (N = 1, 2, 4, 8, …)
#   base-prefetchN  walship fetch --prefetch N as built from $BASE, whose
#               prefetcher left its spool files dirty for the server to fsync
#   pgbackrest, pgbackrest-async   archive-get, one call per segment / archive-async
#               with process-max 2 (only when pgbackrest is installed)
#   sftp-fetch  walship fetch with its defaults, from the zstd archive through
#               OpenSSH's sshd on loopback (bench/sshd.sh)
#   base-sftp-fetch  the same, as built from $BASE
#   floor       the same WAL put into pg_wal beforehand, no restore_command
# Each run is timed from pg_ctl start to the end of recovery (the server
# accepting connections after it promoted), and the WAL replayed is divided
# by that time. Free memory is filled with page cache before every run
# (BENCHMARKING.md). Every mode reads the same segments: the primary archives
# each into every archive.
#
# Needs root (runuser), PostgreSQL 15 in $PGBIN and Go.
#
# Environment:
#   WORK=/var/tmp/walship-bench-fetch   work dir (primary, archives and backup are kept)
#   SEGMENTS=64     WAL to replay, in 16 MiB segments (64: 1 GiB)
#   KIND=pgbench    pgbench: TPC-B-like load (blank filler, compresses to ~10 %);
#                   random: rows of random bytes (gen_random_bytes), incompressible
#   ROUNDS=3        rounds; each times every mode once, in turn
#   MODES="cp fetch fetch-raw prefetch8 floor"
#   PGBIN=/usr/lib/postgresql/15/bin   PGPORT=55451
#   REGEN=1         build the primary, the backup and the WAL again
#   BASE=e17b9f9    the commit base-prefetchN modes build
#   SRC=$REPO       the source tree walship is built from
#   STRACE=MODE     instead, one run of MODE with the startup process under
#                   strace -T (per-syscall times in $WORK/strace.txt)
#   SSH_PORT=55452  the sshd of the sftp modes
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/var/tmp/walship-bench-fetch}
SEGMENTS=${SEGMENTS:-64}
KIND=${KIND:-pgbench}
ROUNDS=${ROUNDS:-3}
MODES=${MODES:-cp fetch fetch-raw prefetch8 floor}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGPORT=${PGPORT:-55451}
W=$WORK/$KIND
PRIMARY=$W/primary
R=$WORK/replay
SOCK=$WORK/run
ARCH=$W/archive
RAWARCH=$W/archive-raw
BIN=$WORK/bin/walship
CONF=$W/backrest.conf
OUT=$W/results.txt

log() { printf '== %s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root"
[[ -x $PGBIN/initdb ]] || die "no PostgreSQL in $PGBIN"
backrest=0
command -v pgbackrest >/dev/null && backrest=1

as_pg() { runuser -u postgres -- "$@"; }
psql_() { as_pg "$PGBIN/psql" -X -q -At -h "$SOCK" -p "$PGPORT" -d postgres -v ON_ERROR_STOP=1 "$@"; }
stop() { as_pg "$PGBIN/pg_ctl" -D "$1" -m immediate -w stop >/dev/null 2>&1 || true; }
SSHD_PID=
trap 'stop "$PRIMARY"; stop "$R"; [[ -z $SSHD_PID ]] || kill "$SSHD_PID"' EXIT

mkdir -p "$WORK/bin" "$W"
(cd "${SRC:-$REPO}" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$BIN" ./cmd/walship)
chmod 755 "$WORK" "$WORK/bin" "$W"
install -d -o postgres -g postgres -m 700 "$SOCK"
BASE=${BASE:-e17b9f9}
BASEBIN=$WORK/bin/walship-$BASE
if [[ " $MODES " == *" base-"* && ! -x $BASEBIN ]]; then
	rm -rf "$WORK/base-src" && mkdir -p "$WORK/base-src"
	git -C "$REPO" archive "$BASE" | tar -x -C "$WORK/base-src"
	(cd "$WORK/base-src" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$BASEBIN" ./cmd/walship)
fi
cat >"$CONF" <<EOF
[global]
repo1-path=$W/pgbackrest
compress-type=zst
compress-level=1
log-level-console=warn
log-path=$W/pgbackrest-log
lock-path=$W/pgbackrest-lock
spool-path=$W/pgbackrest-spool

[bench]
pg1-path=$PRIMARY
pg1-socket-path=$SOCK
pg1-port=$PGPORT
EOF
chown postgres: "$CONF"

load() {
	case $KIND in
	pgbench) as_pg "$PGBIN/pgbench" -n -c 4 -T 5 -h "$SOCK" -p "$PGPORT" postgres >/dev/null 2>&1 ;;
	random) psql_ -c "INSERT INTO r SELECT g, gen_random_bytes(1000) FROM generate_series(1, 100000) g" ;;
	*) die "KIND=$KIND: pgbench or random" ;;
	esac
}

if [[ ${REGEN:-0} == 1 || ! -f $W/backup-id ]]; then
	stop "$PRIMARY"
	rm -rf "$PRIMARY" "$ARCH" "$RAWARCH" "$W"/pgbackrest* "$W/backup-id"
	install -d -o postgres -g postgres -m 700 "$PRIMARY" "$ARCH" "$RAWARCH" "$W/pgbackrest" \
		"$W/pgbackrest-log" "$W/pgbackrest-lock" "$W/pgbackrest-spool"
	as_pg "$PGBIN/initdb" -D "$PRIMARY" -U postgres -A trust --no-sync >/dev/null
	echo "host replication all 127.0.0.1/32 trust" >>"$PRIMARY/pg_hba.conf"
	ac="$BIN push --archive $ARCH %p %f && $BIN push --archive $RAWARCH --compress none %p %f"
	[[ $backrest == 0 ]] || ac="$ac && pgbackrest --config=$CONF --stanza=bench archive-push %p"
	cat >>"$PRIMARY/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$SOCK'
wal_level = replica
archive_mode = on
archive_command = '$ac'
shared_buffers = 256MB
max_wal_size = 4GB
EOF
	touch "$W/primary.log" && chown postgres: "$W/primary.log"
	as_pg "$PGBIN/pg_ctl" -D "$PRIMARY" -l "$W/primary.log" -w start >/dev/null
	[[ $backrest == 0 ]] || as_pg pgbackrest --config="$CONF" --stanza=bench stanza-create
	case $KIND in
	pgbench)
		log "pgbench -i -s 20"
		as_pg "$PGBIN/pgbench" -i -q -s 20 -h "$SOCK" -p "$PGPORT" postgres >/dev/null 2>&1 ;;
	random)
		psql_ -c "CREATE EXTENSION pgcrypto" -c "CREATE TABLE r (id int, b bytea)"
		psql_ -c "ALTER TABLE r ALTER b SET STORAGE EXTERNAL" ;;
	esac
	as_pg "$BIN" backup --archive "$ARCH" --dsn "host=$SOCK port=$PGPORT user=postgres dbname=postgres" \
		--fast-checkpoint --json >"$W/backup.json"
	python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <"$W/backup.json" >"$W/backup-id.tmp"
	start=$(psql_ -c "SELECT pg_current_wal_lsn()")
	log "$KIND load until $SEGMENTS segments of WAL are written"
	while [[ $(psql_ -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$start') < $SEGMENTS::numeric * 16777216") == t ]]; do
		load
	done
	psql_ -c "SELECT pg_switch_wal()" >/dev/null
	until [[ $(psql_ -c "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'") == 0 ]]; do
		sleep 0.5
	done
	psql_ -c "SELECT pg_current_wal_lsn()" >"$W/end-lsn"
	stop "$PRIMARY"
	mv "$W/backup-id.tmp" "$W/backup-id"
fi
id=$(cat "$W/backup-id")
startlsn=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["start_lsn"])' <"$W/backup.json")
startwal=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["start_wal"])' <"$W/backup.json")
endlsn=$(cat "$W/end-lsn")
mib=$(python3 -c "
def lsn(s):
    hi, lo = s.split('/'); return (int(hi, 16) << 32) | int(lo, 16)
print((lsn('$endlsn') - lsn('$startlsn')) // (1 << 20))")

# warm: fill free RAM with page cache (BENCHMARKING.md), leaving 2 GiB, then
# read the archives so that every mode starts from cached sources.
warm() {
	local free_mb
	[[ -f $WORK/fill ]] || truncate -s 256G "$WORK/fill"
	free_mb=$(awk '/MemFree/ {print int($2 / 1024)}' /proc/meminfo)
	((free_mb > 3072)) && dd if="$WORK/fill" of=/dev/null bs=4M count=$(((free_mb - 2048) / 4)) status=none
	cat "$ARCH"/wal/* "$RAWARCH"/wal/* >/dev/null
}

# fresh: restore the backup afresh into $R, with archiving off.
fresh() {
	stop "$R"
	rm -rf "$R" "$W/pgbackrest-spool"/*
	install -d -o postgres -g postgres -m 700 "$R"
	as_pg "$BIN" restore --archive "$ARCH" --pgdata "$R" --backup "$id" >/dev/null 2>&1
	echo "archive_mode = off" >>"$R/postgresql.auto.conf"
}

# timed NAME: start the server in $R, wait until recovery is over and it
# accepts connections (pg_ctl -w would return at the consistent point,
# earlier), stop it, and print the time and MiB/s.
timed() {
	local name=$1 start end
	: >"$W/replay.log" && chown postgres: "$W/replay.log"
	sync
	warm
	start=$(date +%s.%N)
	as_pg "$PGBIN/pg_ctl" -D "$R" -l "$W/replay.log" -W start >/dev/null
	until grep -q "database system is ready to accept connections" "$W/replay.log"; do
		grep -q "FATAL\|PANIC" "$W/replay.log" && die "$name: recovery failed; see $W/replay.log"
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
	grep -q "archive recovery complete" "$W/replay.log" || die "$1: recovery did not complete; see $W/replay.log"
}

# floor: the same WAL replayed from pg_wal, where it is put (decompressed)
# beforehand, with no restore_command at all (crash recovery from the
# backup's backup_label): the time PostgreSQL itself needs to apply the WAL.
floor() {
	local f
	fresh
	rm -f "$R/recovery.signal"
	for f in $(ls "$RAWARCH/wal" | grep -x '[0-9A-F]\{24\}'); do
		[[ $f < $startwal ]] && continue
		as_pg cp "$RAWARCH/wal/$f" "$R/pg_wal/$f"
	done
	timed "floor: WAL in pg_wal already"
}

if [[ " $MODES " == *"sftp-"* ]]; then
	. "$REPO/bench/sshd.sh"
	start_sshd "$WORK/ssh" "${SSH_PORT:-55452}" || die "cannot start sshd"
	# restore_command runs as postgres: its own copy of the client key. It
	# logs in as root (sshd refuses the locked postgres account without PAM).
	install -o postgres -m 600 "$SSH_KEY" "$WORK/ssh/postgres_key"
	sftp="--identity $WORK/ssh/postgres_key --known-hosts $SSH_KNOWN_HOSTS --archive sftp://root@127.0.0.1:${SSH_PORT:-55452}$ARCH"
fi
get="pgbackrest --config=$CONF --stanza=bench --pg1-path=$R"
fetch="$BIN fetch --archive $ARCH"
run_mode() {
	case $1 in
	cp) replay "cp" "cp $RAWARCH/wal/%f %p" ;;
	fetch) replay "walship fetch" "$fetch %f %p" ;;
	fetch-raw) replay "walship fetch, raw archive" "$BIN fetch --archive $RAWARCH %f %p" ;;
	fetch0) replay "walship fetch --prefetch 0" "$fetch --prefetch 0 %f %p" ;;
	prefetch*) replay "walship fetch --prefetch ${1#prefetch}" "$fetch --prefetch ${1#prefetch} %f %p" ;;
	base-prefetch*) replay "walship $BASE fetch --prefetch ${1#base-prefetch}" \
		"$BASEBIN fetch --archive $ARCH --prefetch ${1#base-prefetch} %f %p" ;;
	pgbackrest) [[ $backrest == 0 ]] || replay "pgbackrest archive-get" "$get archive-get %f \"%p\"" ;;
	pgbackrest-async) [[ $backrest == 0 ]] ||
		replay "pgbackrest archive-get async" "$get --archive-async --process-max=2 archive-get %f \"%p\"" ;;
	sftp-fetch) replay "walship fetch over SFTP" "$BIN fetch $sftp %f %p" ;;
	base-sftp-fetch) replay "walship $BASE fetch over SFTP" "$BASEBIN fetch $sftp %f %p" ;;
	floor) floor ;;
	*) die "unknown mode $1" ;;
	esac
}

: >"$OUT"
echo "replay of $mib MiB of $KIND WAL ($startlsn to $endlsn), $(nproc) CPUs, walship $(git -C "$REPO" rev-parse --short HEAD), $(date -u)" | tee -a "$OUT"
if [[ -n ${STRACE:-} ]]; then
	# One run of mode $STRACE with the startup process, the one that runs
	# restore_command, under strace.
	(
		until pid=$(pgrep -f "postgres: startup" | head -1) && [[ -n $pid ]]; do sleep 0.005; done
		strace -f -T -tt -e trace=fsync,fdatasync,rename,unlink,openat,wait4,clone,clone3,vfork,sync_file_range \
			-o "$WORK/strace.txt" -p "$pid"
	) &
	run_mode "$STRACE"
	wait || true
	exit 0
fi
read -r -a modes <<<"$MODES"
for round in $(seq "$ROUNDS"); do
	echo "-- round $round" | tee -a "$OUT"
	# Rotate the order from round to round, so drift hits every mode alike.
	for ((i = 0; i < ${#modes[@]}; i++)); do
		run_mode "${modes[(i + round - 1) % ${#modes[@]}]}"
	done
done
python3 "$REPO/bench/summary.py" "$OUT" \
	"walship fetch" "cp" \
	"walship fetch, raw archive" "cp" \
	"walship fetch --prefetch 0" "cp" \
	"walship $BASE fetch --prefetch 8" "cp" \
	"walship fetch --prefetch 8" "walship $BASE fetch --prefetch 8" \
	"walship fetch --prefetch 1" "cp" \
	"walship fetch --prefetch 2" "cp" \
	"walship fetch --prefetch 4" "cp" \
	"walship fetch --prefetch 8" "cp" \
	"walship fetch --prefetch 16" "cp" \
	"floor: WAL in pg_wal already" "cp" \
	"walship fetch over SFTP" "cp" \
	"walship $BASE fetch over SFTP" "cp" \
	"walship fetch over SFTP" "walship $BASE fetch over SFTP" \
	"walship fetch" "pgbackrest archive-get async" | tee -a "$OUT"
log "results in $OUT"
