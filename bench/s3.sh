#!/usr/bin/env bash
# walship on S3 beside walship on a local directory: versitygw (the S3 server
# the tests use) on this host's loopback, its posix backend on the same ext4
# loop file system as the local archives.
#
#   push:    walship push --archive s3://… (zstd, none)  vs  --archive DIR (zstd, none)
#   restore: walship fetch --archive s3://…               vs  --archive DIR
#   fixed:   one call for a missing file, both backends, and walship --version
#
# Every call is one process, as PostgreSQL makes them (bench/pushbench, the
# harness bench/run uses: interleaved rounds, fresh archive per pass, page
# cache topped up between passes). The inputs are bench/run's cached 16 MiB
# segments of pgbench WAL and of WAL of random rows (made by `bench/run
# prepare` when missing). versitygw fsyncs what it stores; so does walship on
# a local directory.
#
# Run as root (loop mount): bash bench/s3.sh
# Environment: WORK (default /var/tmp/walship-bench, shared with bench/run),
# SEGMENTS=100, ROUNDS=5, LOOP_MB=4096, S3_PORT=55470, NICE=-10,
# WALSHIP_VERSITYGW (default: versitygw on PATH; .ci/run builds v1.8.0).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/var/tmp/walship-bench}
S=$WORK/s3
SEGMENTS=${SEGMENTS:-100}
ROUNDS=${ROUNDS:-5}
LOOP_MB=${LOOP_MB:-4096}
S3_PORT=${S3_PORT:-55470}
NICE=${NICE:--10}
VGW=${WALSHIP_VERSITYGW:-$(command -v versitygw || true)}
WALSHIP=$S/bin/walship # built here: bench/run may be using bin/walship
MNT=$S/mnt
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$S/results/$STAMP
KINDS=(pgbench random)

log() { printf '\n== %s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench/s3: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (loop mount)"
[[ -x $VGW ]] || die "no versitygw: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 (or set WALSHIP_VERSITYGW)"
mkdir -p "$S/bin" "$OUT"

if [[ ! -f $WORK/src/pgbench/.complete || ! -f $WORK/src/random/.complete ]]; then
	log "generating the input WAL with bench/run prepare"
	WORK=$WORK bash "$REPO/bench/run" prepare
fi
log "building walship and pushbench"
(
	cd "$REPO"
	export CGO_ENABLED=0
	go build -trimpath -ldflags "-s -w -X main.version=$(git describe --always --dirty 2>/dev/null || echo dev)" -o "$WALSHIP" ./cmd/walship
	go build -trimpath -o "$S/bin/pushbench" ./bench/pushbench
)

VGW_PID= LOOPDEV=
cleanup() {
	set +e
	[[ -z $VGW_PID ]] || kill "$VGW_PID" 2>/dev/null
	if [[ -n $LOOPDEV ]]; then
		umount "$MNT" 2>/dev/null
		losetup -d "$LOOPDEV" 2>/dev/null
	fi
	rm -f "$S/fill"
}
trap cleanup EXIT

# ------------------------------------------------------- loop file system
img=$S/loop.img
if mountpoint -q "$MNT"; then
	dev=$(findmnt -no SOURCE "$MNT")
	umount "$MNT"
	[[ $dev == /dev/loop* ]] && losetup -d "$dev" 2>/dev/null || true
fi
if [[ ! -f $img ]] || (( $(stat -c %s "$img") != LOOP_MB * 1024 * 1024 )); then
	log "writing the $LOOP_MB MiB loop file"
	rm -f "$img"
	dd if=/dev/zero of="$img" bs=4M count=$(( LOOP_MB / 4 )) conv=fsync status=none
fi
mkfs.ext4 -F -q -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "$img"
mkdir -p "$MNT"
LOOPDEV=$(losetup --find --show "$img")
mount -t ext4 "$LOOPDEV" "$MNT"
log "pre-filling $MNT"
free_mb=$(df -m --output=avail "$MNT" | tail -1)
dd if=/dev/zero of="$MNT/prefill" bs=4M count=$(( (free_mb - 256) / 4 )) conv=fsync status=none
rm -f "$MNT/prefill"
sync

# ------------------------------------------------------------- versitygw
# Buckets: "push" (emptied before every pass) and "restore" on the loop file
# system, as the local archives are.
mkdir -p "$MNT/vgw/push" "$MNT/vgw/restore"
"$VGW" --access walship-bench --secret walship-bench-secret --port "127.0.0.1:$S3_PORT" --quiet posix "$MNT/vgw" 2>"$S/versitygw.log" &
VGW_PID=$!
for _ in $(seq 100); do
	curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && break
	kill -0 "$VGW_PID" 2>/dev/null || die "versitygw exited: $(cat "$S/versitygw.log")"
	sleep 0.1
done
export AWS_ACCESS_KEY_ID=walship-bench AWS_SECRET_ACCESS_KEY=walship-bench-secret AWS_REGION=us-east-1 \
	AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT AWS_EC2_METADATA_DISABLED=true
export WALSHIP_S3_PATH_STYLE=true WALSHIP_LOG_LEVEL=warn

# Archives the restore runs read from, one per kind and compression and
# backend, made once per run.
R=$S/restore-src
for k in "${KINDS[@]}"; do
	for c in zstd none; do
		log "archiving $SEGMENTS segments of $k WAL into $R/$k-$c and s3://restore/$k-$c"
		rm -rf "${R:?}/$k-$c"
		mkdir -p "$R/$k-$c"
		for f in $(ls "$WORK/src/$k" | head -n "$SEGMENTS"); do
			"$WALSHIP" push --archive "$R/$k-$c" --compress $c "$WORK/src/$k/$f" "$f"
			"$WALSHIP" push --archive "s3://restore/$k-$c" --compress $c "$WORK/src/$k/$f" "$f"
		done
	done
done
sync

log "warming memory"
free_mb=$(awk '/^MemFree:/ {print int($2/1024)}' /proc/meminfo)
truncate -s 256G "$S/fill"
(( free_mb <= 1024 )) || dd if="$S/fill" of=/dev/null bs=4M count=$(( (free_mb - 1024) / 4 )) status=none
cat "$WORK"/src/*/0* "$R"/*/wal/* >/dev/null

timed() { nice -n "$NICE" ionice -c 2 -n 0 "$@"; }
load0=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ push
# Each pass of an S3 tool pushes under a prefix named like its directory,
# into a bucket emptied first.
EMPTY="rm -rf $MNT/vgw/push/* && mkdir {dir}"
log "push: $ROUNDS rounds x ${#KINDS[@]} kinds x 4 tools x $SEGMENTS segments"
printf '%s\t%s\t%s\n' \
	walship-s3-zstd "$EMPTY" "$WALSHIP push --archive s3://push/\$(basename {dir}) --compress zstd {p} {f}" \
	walship-local-zstd 'mkdir {dir}' "$WALSHIP push --archive {dir} --compress zstd {p} {f}" \
	walship-s3-none "$EMPTY" "$WALSHIP push --archive s3://push/\$(basename {dir}) --compress none {p} {f}" \
	walship-local-none 'mkdir {dir}' "$WALSHIP push --archive {dir} --compress none {p} {f}" \
	>"$OUT/push-tools.tsv"
timed "$S/bin/pushbench" -tools "$OUT/push-tools.tsv" -kind pgbench="$WORK/src/pgbench" -kind random="$WORK/src/random" \
	-segments "$SEGMENTS" -rounds "$ROUNDS" -target "$MNT" -fill "$S/fill" -raw "$OUT/push.csv" \
	-ratios walship-s3-zstd/walship-local-zstd,walship-s3-none/walship-local-none >"$OUT/push.txt"

# --------------------------------------------------------------- restore
for k in "${KINDS[@]}"; do
	log "restore of $k WAL: $ROUNDS rounds x 4 tools x $SEGMENTS segments"
	printf '%s\t%s\t%s\n' \
		walship-s3-zstd 'mkdir {dir}' "$WALSHIP fetch --archive s3://restore/$k-zstd {f} {dir}/{f}" \
		walship-local-zstd 'mkdir {dir}' "$WALSHIP fetch --archive $R/$k-zstd {f} {dir}/{f}" \
		walship-s3-none 'mkdir {dir}' "$WALSHIP fetch --archive s3://restore/$k-none {f} {dir}/{f}" \
		walship-local-none 'mkdir {dir}' "$WALSHIP fetch --archive $R/$k-none {f} {dir}/{f}" \
		>"$OUT/restore-$k-tools.tsv"
	timed "$S/bin/pushbench" -tools "$OUT/restore-$k-tools.tsv" -kind "$k=$WORK/src/$k" \
		-segments "$SEGMENTS" -rounds "$ROUNDS" -target "$MNT" -fill "$S/fill" -raw "$OUT/restore-$k.csv" \
		-ratios walship-s3-zstd/walship-local-zstd,walship-s3-none/walship-local-none >"$OUT/restore-$k.txt"
done

# ----------------------------------------------------------------- fixed
log "fixed cost of one call"
mkdir -p "$MNT/fixed"
printf '%s\t%s\n' \
	"walship --version" "$WALSHIP --version" \
	"walship fetch (s3), missing segment" "$WALSHIP fetch --archive s3://restore/pgbench-zstd 0000000100000000000000FF $MNT/fixed/RECOVERYXLOG" \
	"walship fetch (local), missing segment" "$WALSHIP fetch --archive $R/pgbench-zstd 0000000100000000000000FF $MNT/fixed/RECOVERYXLOG" \
	"walship fetch (s3), missing .history" "$WALSHIP fetch --archive s3://restore/pgbench-zstd 00000009.history $MNT/fixed/RECOVERYHISTORY" \
	"walship fetch (local), missing .history" "$WALSHIP fetch --archive $R/pgbench-zstd 00000009.history $MNT/fixed/RECOVERYHISTORY" \
	>"$OUT/fixed.tsv"
timed "$S/bin/pushbench" -fixed "$OUT/fixed.tsv" -n 100 -warmup 3 -fill "$S/fill" -raw "$OUT/fixed.csv" >"$OUT/fixed.txt"

{
	echo "walship bench/s3.sh $STAMP"
	echo "machine:   $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
	echo "walship:   $(cd "$REPO" && git describe --always --dirty 2>/dev/null) ($("$WALSHIP" --version))"
	echo "server:    versitygw ($VGW) on 127.0.0.1:$S3_PORT, posix backend on the loop file system, path-style"
	echo "target:    $LOOP_MB MiB ext4 loop file system ($MNT)"
	echo "settings:  SEGMENTS=$SEGMENTS ROUNDS=$ROUNDS NICE=$NICE"
	echo "inputs:    $(cat "$WORK"/src/pgbench/.complete)"
	echo "           $(cat "$WORK"/src/random/.complete)"
	echo "load avg:  $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
	echo
	cat "$OUT/push.txt"
	echo "Restore (same table layout; 'push' there means one fetch call per segment)"
	echo
	for k in "${KINDS[@]}"; do cat "$OUT/restore-$k.txt"; done
	cat "$OUT/fixed.txt"
	echo "raw numbers: $OUT/*.csv"
} >"$OUT/summary.txt"
cat "$OUT/summary.txt"
