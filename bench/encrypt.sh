#!/usr/bin/env bash
# The cost of encryption at rest, in one run: walship fetch of archived
# segments, walship backup and walship restore, each into (from) a plain
# archive and an encrypted one (walship encryption init, age X25519),
# interleaved, with ratios of medians; and walship push of the same
# segments (fetched back raw) into fresh plain and encrypted archives, zstd
# and none, with an identical re-push. bench/run's push rows
# (walship-zstd-age, walship-none-age) time push on its generated WAL too.
#
# One cluster writes both archives: its archive_command pushes every
# segment into the plain archive and then into the encrypted one, so both
# hold the same WAL and every backup waits for its WAL alike.
#
# Needs root (runuser), PostgreSQL 15 in $PGBIN, Go.
#
# Environment:
#   WORK=/var/tmp/walship-bench-encrypt  work dir (the database is kept)
#   SCALE=20        pgbench scale (20 is about 300 MB)
#   SEGMENTS=50     segments fetched per pass
#   ROUNDS=5        interleaved rounds of the fetch rows; backup and
#                   restore run BACKUP_ROUNDS=3 rounds
#   PGBIN=/usr/lib/postgresql/15/bin   PGPORT=55443
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/var/tmp/walship-bench-encrypt}
SCALE=${SCALE:-20}
SEGMENTS=${SEGMENTS:-50}
ROUNDS=${ROUNDS:-5}
BACKUP_ROUNDS=${BACKUP_ROUNDS:-3}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGPORT=${PGPORT:-55443}
PGDATA=$WORK/pgdata
SOCK=$WORK/run
PLAIN=$WORK/archive-plain
ENC=$WORK/archive-enc
KEY=$WORK/key.txt
BIN=$WORK/bin/walship
RAW=$WORK/samples.tsv
OUT=$WORK/results.txt

log() { printf '== %s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root"
[[ -x $PGBIN/initdb ]] || die "no PostgreSQL in $PGBIN"

as_pg() { runuser -u postgres -- "$@"; }
psql_() { as_pg "$PGBIN/psql" -X -q -At -h "$SOCK" -p "$PGPORT" -d postgres -v ON_ERROR_STOP=1 "$@"; }
pg_stop() { as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true; }
trap pg_stop EXIT

mkdir -p "$WORK/bin"
(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$BIN" ./cmd/walship)
chmod 755 "$WORK" "$WORK/bin"

if [[ ! -f $PGDATA/PG_VERSION || ! -f $KEY ]]; then
	log "a pgbench database of scale $SCALE, archived into a plain and an encrypted archive"
	pg_stop
	rm -rf "$PGDATA" "$PLAIN" "$ENC" "$KEY"
	install -d -o postgres -g postgres -m 755 "$PLAIN" "$ENC" "$SOCK"
	install -d -o postgres -g postgres -m 700 "$PGDATA"
	"$BIN" encryption keygen "$KEY" >"$WORK/recipient.txt" 2>/dev/null
	chown postgres: "$KEY"
	as_pg "$BIN" encryption init --archive "$ENC" -r "$(cat "$WORK/recipient.txt")" >/dev/null
	as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust >/dev/null
	touch "$WORK/postgres.log" && chown postgres: "$WORK/postgres.log"
	cat >>"$PGDATA/postgresql.conf" <<-EOF
		port = $PGPORT
		listen_addresses = ''
		unix_socket_directories = '$SOCK'
		archive_mode = on
		archive_command = 'WALSHIP_LOG_LEVEL=warn $BIN push --archive $PLAIN %p %f && WALSHIP_LOG_LEVEL=warn $BIN push --archive $ENC %p %f'
		max_wal_size = 4GB
		wal_level = replica
	EOF
	as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/postgres.log" -w start >/dev/null
	as_pg "$PGBIN/pgbench" -h "$SOCK" -p "$PGPORT" -i -s "$SCALE" -q postgres >/dev/null 2>&1
	as_pg "$PGBIN/pgbench" -h "$SOCK" -p "$PGPORT" -n -T 20 -c 2 postgres >/dev/null
	psql_ -c "SELECT pg_switch_wal()" >/dev/null
	sleep 5
else
	as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/postgres.log" -w start >/dev/null
fi

mapfile -t SEGS < <(ls "$PLAIN/wal" | grep -E '^[0-9A-F]{24}\.zst$' | sed 's/\.zst$//' | head -n "$SEGMENTS")
((${#SEGS[@]} >= 10)) || die "only ${#SEGS[@]} segments archived: raise SCALE"
log "fetch: $ROUNDS rounds x ${#SEGS[@]} segments x 2 archives"
: >"$RAW"
dest=$WORK/dest
mkdir -p "$dest"
for ((r = 1; r <= ROUNDS; r++)); do
	order=(plain enc)
	((r % 2 == 0)) && order=(enc plain)
	for v in "${order[@]}"; do
		a=$PLAIN args=()
		[[ $v == enc ]] && a=$ENC args=(--encryption-identity "$KEY")
		for s in "${SEGS[@]}"; do
			rm -f "$dest/seg"
			t0=$(date +%s%N)
			WALSHIP_LOG_LEVEL=warn "$BIN" fetch --archive "$a" "${args[@]}" "$s" "$dest/seg"
			t1=$(date +%s%N)
			printf 'fetch\t%s\t%s\n' "$v" "$(( (t1 - t0) / 1000 ))" >>"$RAW"
		done
	done
done

log "push: $ROUNDS rounds x ${#SEGS[@]} segments x 2 compressions x 2 archives"
src=$WORK/src
mkdir -p "$src"
for s in "${SEGS[@]}"; do
	[[ -f $src/$s ]] || WALSHIP_LOG_LEVEL=warn "$BIN" fetch --archive "$PLAIN" "$s" "$src/$s"
done
for ((r = 1; r <= ROUNDS; r++)); do
	for c in zstd none; do
		order=(plain enc)
		((r % 2 == 0)) && order=(enc plain)
		for v in "${order[@]}"; do
			a=$WORK/push-$v
			rm -rf "$a" && mkdir -p "$a" && sync
			[[ $v == enc ]] && "$BIN" encryption init --archive "$a" -r "$(cat "$WORK/recipient.txt")" >/dev/null
			for s in "${SEGS[@]}"; do
				t0=$(date +%s%N)
				WALSHIP_LOG_LEVEL=warn "$BIN" push --archive "$a" --compress "$c" "$src/$s" "$s"
				t1=$(date +%s%N)
				printf 'push-%s\t%s\t%s\n' "$c" "$v" "$(( (t1 - t0) / 1000 ))" >>"$RAW"
			done
			# An identical re-push: compared by digest when encrypted.
			s=${SEGS[0]}
			t0=$(date +%s%N)
			WALSHIP_LOG_LEVEL=warn "$BIN" push --archive "$a" --compress "$c" "$src/$s" "$s"
			t1=$(date +%s%N)
			printf 're-push-%s\t%s\t%s\n' "$c" "$v" "$(( (t1 - t0) / 1000 ))" >>"$RAW"
		done
	done
done
rm -rf "$WORK/push-plain" "$WORK/push-enc"

log "backup and restore: $BACKUP_ROUNDS rounds x 2 archives"
for ((r = 1; r <= BACKUP_ROUNDS; r++)); do
	order=(plain enc)
	((r % 2 == 0)) && order=(enc plain)
	for v in "${order[@]}"; do
		a=$PLAIN args=()
		[[ $v == enc ]] && a=$ENC args=(--encryption-identity "$KEY")
		t0=$(date +%s%N)
		id=$(WALSHIP_LOG_LEVEL=warn "$BIN" backup --archive "$a" --dsn "host=$SOCK port=$PGPORT user=postgres" --fast-checkpoint --json |
			python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
		t1=$(date +%s%N)
		printf 'backup\t%s\t%s\n' "$v" "$(( (t1 - t0) / 1000 ))" >>"$RAW"
		rm -rf "$WORK/restored"
		sync
		t0=$(date +%s%N)
		WALSHIP_LOG_LEVEL=warn "$BIN" restore --archive "$a" "${args[@]}" --pgdata "$WORK/restored" --backup "$id" >/dev/null
		t1=$(date +%s%N)
		printf 'restore\t%s\t%s\n' "$v" "$(( (t1 - t0) / 1000 ))" >>"$RAW"
	done
done
rm -rf "$WORK/restored"

python3 - "$RAW" <<'EOF' | tee "$OUT"
import sys, statistics, collections
s = collections.defaultdict(list)
for line in open(sys.argv[1]):
    op, v, us = line.split()
    s[(op, v)].append(int(us) / 1000)
print(f"{'operation':12} {'plain ms':>10} {'encrypted ms':>13} {'ratio':>7}   (medians; n per side)")
for op in ("push-zstd", "push-none", "re-push-zstd", "re-push-none", "fetch", "backup", "restore"):
    p, e = statistics.median(s[(op, "plain")]), statistics.median(s[(op, "enc")])
    print(f"{op:12} {p:10.1f} {e:13.1f} {e/p:7.3f}   n={len(s[(op, 'plain')])}")
EOF
du -sh "$PLAIN" "$ENC" | sed 's/^/size: /'
uptime | sed 's/^/load: /'
