#!/usr/bin/env bash
# walship on S3 beside walship on a local directory and beside pgBackRest's
# S3 repository: versitygw (the S3 server the tests use) on this host's
# loopback. `make bench` runs it after bench/run's own rows (S3=0 skips it);
# `make bench-s3` runs it alone.
#
#   push:    walship push --archive s3://… over http and over https, and
#            --archive DIR (zstd); pgbackrest archive-push, repo1-type=s3
#            (https: pgBackRest 2.45 speaks nothing else; zst level 1 and
#            lz4) and repo1-type=posix (zst level 1)
#   restore: walship fetch and pgbackrest archive-get from the same kinds of
#            archive, one segment per call
#   fixed:   one call for a missing file on every backend, sh -c true and
#            walship --version
#
# Every call is one process, as PostgreSQL makes them (bench/pushbench, the
# harness bench/run uses: tools interleaved round by round, a fresh archive
# per pass, page cache topped up between passes). The inputs are bench/run's
# cached 16 MiB segments of pgbench WAL and of WAL of random rows (made by
# `bench/run prepare` when missing).
#
# Where things are: the archives pushed into (local directories and S3
# buckets alike) are on one ext4 loop file system: versitygw's posix root
# for the push runs is that file system's directory the pushbench passes
# are made in, so each pass's directory is a bucket (walship writes
# s3://BUCKET/wal/…, pgbackrest s3://BUCKET/pgbackrest/…). The archives the
# restore runs read are on the root file system and in page cache (they are
# too big for the loop file system together), local and S3 alike; the
# restored segments are written to the loop file system. Four versitygw
# processes: push and restore root, each over http and https (a self-signed
# RSA-2048 certificate for 127.0.0.1, which walship trusts through
# AWS_CA_BUNDLE and pgbackrest does not check: repo1-storage-verify-tls=n),
# all with --keep-alive, as AWS S3 and most servers run (versitygw's default
# closes the connection after every response: then every request of a call
# pays a TCP and TLS handshake); a fifth without it, https, for the fixed
# cost rows "no keep-alive". versitygw fsyncs what it stores; so do walship
# and pgbackrest on a local directory.
#
# Run as root (loop mount, runuser): bash bench/s3.sh
# Environment: WORK (default /var/tmp/walship-bench, shared with bench/run),
# SEGMENTS=100, ROUNDS=5, LOOP_MB=4096, S3_PORT=55470 (uses 4 ports from
# there), S3_KEEPALIVE=1 (0: versitygw's default, no keep-alive), NICE=-10, FIXED_N=100, WALSHIP_VERSITYGW (default:
# ~/.cache/walship/versitygw-v1.8.0/versitygw, else versitygw on PATH).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/var/tmp/walship-bench}
S=$WORK/s3
SEGMENTS=${SEGMENTS:-100}
ROUNDS=${ROUNDS:-5}
LOOP_MB=${LOOP_MB:-4096}
S3_PORT=${S3_PORT:-55470}
S3_KEEPALIVE=${S3_KEEPALIVE:-1}
NICE=${NICE:--10}
FIXED_N=${FIXED_N:-100}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGPORT=${PGPORT:-55439} # bench/run's cluster, which made the input WAL
PGDATA=$WORK/pgdata
SOCK=$WORK/run
VGW=${WALSHIP_VERSITYGW:-}
if [[ -z $VGW ]]; then
	VGW=$HOME/.cache/walship/versitygw-v1.8.0/versitygw
	[[ -x $VGW ]] || VGW=$(command -v versitygw || true)
fi
WALSHIP=$S/bin/walship # built here: bench/run may be using bin/walship
MNT=$S/mnt
PUSH=$MNT/push              # versitygw root of the push runs = pushbench -target
RESTORE_OUT=$MNT/restore    # pushbench -target of the restore runs
RL=$S/restore-local         # local archives the restore runs read
RV=$S/restore-vgw           # versitygw root of the restore runs
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$S/results/$STAMP
KINDS=(pgbench random)
KEY=walship-bench SECRET=walship-bench-secret
P_PUSH=$S3_PORT P_PUSH_TLS=$(( S3_PORT + 1 )) P_RESTORE=$(( S3_PORT + 2 )) P_RESTORE_TLS=$(( S3_PORT + 3 )) P_NOKA=$(( S3_PORT + 4 ))

log() { printf '\n== %s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench/s3: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (loop mount, runuser)"
[[ -x $VGW ]] || die "no versitygw: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 (or set WALSHIP_VERSITYGW)"
[[ -x $PGBIN/pg_ctl ]] || die "no PostgreSQL 15 in $PGBIN"
mkdir -p "$S/bin" "$OUT"

if ! command -v pgbackrest >/dev/null; then
	log "installing pgbackrest (apt-get)"
	apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbackrest >/dev/null
fi
if [[ ! -f $WORK/src/pgbench/.complete || ! -f $WORK/src/random/.complete || ! -f $PGDATA/PG_VERSION ]]; then
	log "generating the input WAL with bench/run prepare"
	[[ -x $REPO/bin/walship ]] || make -C "$REPO" build >&2
	WORK=$WORK SEGMENTS=$SEGMENTS bash "$REPO/bench/run" prepare
fi
log "building walship and pushbench"
(
	cd "$REPO"
	export CGO_ENABLED=0
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(git describe --always --dirty 2>/dev/null || echo dev)" -o "$WALSHIP" ./cmd/walship
	go build -trimpath -o "$S/bin/pushbench" ./bench/pushbench
)

# ------------------------------------------------------------ PostgreSQL
# Only for pgbackrest stanza-create, which wants the server up; the timed
# runs have it stopped (archive-push and archive-get read pg_control only).
as_pg() { runuser -u postgres -- "$@"; }
pg_running() { as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }
pg_start() {
	pg_running && return
	install -d -o postgres -g postgres -m 755 "$SOCK"
	touch "$WORK/postgres.log" && chown postgres: "$WORK/postgres.log"
	as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/postgres.log" -w -t 120 start >/dev/null
}
pg_stop() {
	pg_running || return 0
	as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 120 stop >/dev/null
}

VGW_PIDS=() LOOPDEV=
cleanup() {
	set +e
	local p
	for p in "${VGW_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${VGW_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	if [[ -n $LOOPDEV ]]; then
		for p in 1 2 3 4 5; do
			umount "$MNT" 2>/dev/null && break
			sleep 1
		done
		losetup -d "$LOOPDEV" 2>/dev/null
	fi
	rm -f "$S/fill"
	pg_stop
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
mkdir -p "$PUSH" "$RESTORE_OUT"

# ------------------------------------------------------------- versitygw
timed() { nice -n "$NICE" ionice -c 2 -n 0 "$@"; }
CERT=$S/tls/cert.pem
if [[ ! -f $CERT ]] || ! openssl x509 -checkend 7200 -noout -in "$CERT" >/dev/null; then
	mkdir -p "$S/tls"
	openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
		-keyout "$S/tls/key.pem" -out "$CERT" 2>/dev/null
fi
rm -rf "$RV" "$RL"
mkdir -p "$RV" "$RL"
# vgw PORT ROOT [tls] [noka]: one versitygw (at the timed runs' priority:
# it does the server's half of every S3 call).
vgw() {
	local port=$1 root=$2 scheme=http opts=()
	if [[ ${3:-} == tls ]]; then scheme=https opts=(--cert "$CERT" --key "$S/tls/key.pem"); fi
	[[ $S3_KEEPALIVE == 0 || ${4:-} == noka ]] || opts+=(--keep-alive)
	# Not through timed(): a function run in the background is a subshell,
	# and $! would be its pid, not versitygw's.
	nice -n "$NICE" ionice -c 2 -n 0 "$VGW" --access "$KEY" --secret "$SECRET" --port "127.0.0.1:$port" "${opts[@]}" \
		--quiet posix "$root" >"$S/versitygw-$port.log" 2>&1 &
	VGW_PIDS+=($!)
	local i
	for i in $(seq 100); do
		curl -sk -o /dev/null "$scheme://127.0.0.1:$port/" && return
		kill -0 "${VGW_PIDS[-1]}" 2>/dev/null || die "versitygw exited: $(cat "$S/versitygw-$port.log")"
		sleep 0.1
	done
	die "versitygw on port $port does not answer"
}
vgw "$P_PUSH" "$PUSH"
vgw "$P_PUSH_TLS" "$PUSH" tls
vgw "$P_RESTORE" "$RV"
vgw "$P_RESTORE_TLS" "$RV" tls
vgw "$P_NOKA" "$RV" tls noka
export AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
# walship trusts the certificate as a CA bundle (AWS_CA_BUNDLE, which also
# overrides one the environment may set); SSL_CERT_FILE too, for tools that read it.
export WALSHIP_S3_PATH_STYLE=true WALSHIP_LOG_LEVEL=warn SSL_CERT_FILE=$CERT AWS_CA_BUNDLE=$CERT

# ------------------------------------------------------------ pgbackrest
# Two configurations, repo1-type=s3 (the bucket is given per call) and
# posix (the path is given per call), and for each a template repository
# right after stanza-create, copied into every pass's bucket or directory
# (as bench/run does for its local rows).
PGBR_S3=$S/pgbackrest-s3.conf PGBR_LOCAL=$S/pgbackrest-local.conf
mkdir -p "$S/pgbr-lock" "$S/pgbr-spool"
common="log-level-console=warn
log-level-stderr=warn
log-level-file=off
lock-path=$S/pgbr-lock
spool-path=$S/pgbr-spool
archive-async=n

[bench]
pg1-path=$PGDATA
pg1-socket-path=$SOCK
pg1-port=$PGPORT
pg1-user=postgres"
cat >"$PGBR_S3" <<-EOF
	[global]
	repo1-type=s3
	repo1-path=/pgbackrest
	repo1-s3-endpoint=127.0.0.1
	repo1-storage-port=$P_RESTORE_TLS
	repo1-s3-bucket=pgbr-template
	repo1-s3-key=$KEY
	repo1-s3-key-secret=$SECRET
	repo1-s3-region=us-east-1
	repo1-s3-uri-style=path
	repo1-storage-verify-tls=n
	$common
EOF
cat >"$PGBR_LOCAL" <<-EOF
	[global]
	repo1-path=$S/pgbr-template-local
	$common
EOF
log "pgbackrest stanza-create (S3 template bucket, local template repository)"
mkdir -p "$RV/pgbr-template"
rm -rf "$S/pgbr-template-local"
pg_start
pgbackrest --config="$PGBR_S3" --stanza=bench stanza-create
pgbackrest --config="$PGBR_LOCAL" --stanza=bench stanza-create
pg_stop
TMPL_S3=$RV/pgbr-template TMPL_LOCAL=$S/pgbr-template-local
# pgbackrest-s3 CALL: the options of one S3 call, bucket in $b, port in $port.
B_S3='--config='$PGBR_S3' --stanza=bench --repo1-storage-port=$port --repo1-s3-bucket=$b'
B_LOCAL="--config=$PGBR_LOCAL --stanza=bench"

# ------------------------------------------------- archives to restore from
# Per kind: a local walship archive, a walship bucket (read over http and
# https), pgbackrest buckets (zst level 1, lz4) and a local pgbackrest
# repository (zst level 1). Pushed in parallel, untimed.
for k in "${KINDS[@]}"; do
	log "archiving $SEGMENTS segments of $k WAL for the restore runs"
	mkdir -p "$RL/$k-walship" "$RV/walship-$k"
	cp -a "$TMPL_S3" "$RV/pgbr-zst1-$k"
	cp -a "$TMPL_S3" "$RV/pgbr-lz4-$k"
	cp -a "$TMPL_LOCAL" "$RL/$k-pgbr-zst1"
	mapfile -t files < <(ls "$WORK/src/$k" | head -n "$SEGMENTS")
	(( ${#files[@]} == SEGMENTS )) || die "$WORK/src/$k has ${#files[@]} segments, want $SEGMENTS: run bench/run prepare with SEGMENTS=$SEGMENTS"
	pids=()
	(for f in "${files[@]}"; do "$WALSHIP" push --archive "$RL/$k-walship" "$WORK/src/$k/$f" "$f"; done) & pids+=($!)
	(for f in "${files[@]}"; do "$WALSHIP" push --archive "s3://walship-$k/wal" --s3-endpoint "http://127.0.0.1:$P_RESTORE" "$WORK/src/$k/$f" "$f"; done) & pids+=($!)
	(for f in "${files[@]}"; do pgbackrest --config="$PGBR_S3" --stanza=bench --repo1-s3-bucket="pgbr-zst1-$k" --compress-type=zst --compress-level=1 archive-push "$WORK/src/$k/$f"; done) & pids+=($!)
	(for f in "${files[@]}"; do pgbackrest --config="$PGBR_S3" --stanza=bench --repo1-s3-bucket="pgbr-lz4-$k" --compress-type=lz4 archive-push "$WORK/src/$k/$f"; done) & pids+=($!)
	(for f in "${files[@]}"; do pgbackrest $B_LOCAL --repo1-path="$RL/$k-pgbr-zst1" --compress-type=zst --compress-level=1 archive-push "$WORK/src/$k/$f"; done) & pids+=($!)
	for p in "${pids[@]}"; do wait "$p" || die "archiving $k WAL for the restore runs failed"; done
done
sync

log "warming memory"
free_mb=$(awk '/^MemFree:/ {print int($2/1024)}' /proc/meminfo)
truncate -s 256G "$S/fill"
(( free_mb <= 1024 )) || dd if="$S/fill" of=/dev/null bs=4M count=$(( (free_mb - 1024) / 4 )) status=none
# Read twice after the fill, so they stay cached.
for _ in 1 2; do find "$WORK/src" "$RL" "$RV" -type f -path '*/0*' -exec cat {} + >/dev/null; done

load0=$(cut -d' ' -f1-3 /proc/loadavg)

# pushbench names each pass's directory TOOL-KIND under -target: for an S3
# tool that directory is the bucket, made (mkdir, or a copy of the
# pgbackrest template) by the untimed setup and checked by pushbench for the
# segments afterwards. The bucket name is taken from {dir} by the shell
# (d={dir}; … ${d##*/}; no extra process) and the tool is exec'd, so every
# tool costs one sh and one process per call.
H=http://127.0.0.1:$P_PUSH HS=https://127.0.0.1:$P_PUSH_TLS
RATIOS=walship-s3-zstd/walship-local-zstd,walship-s3tls-zstd/walship-local-zstd,walship-s3tls-zstd/pgbackrest-s3-zst1,walship-s3tls-zstd/pgbackrest-s3-lz4,walship-local-zstd/pgbackrest-local-zst1,pgbackrest-s3-zst1/pgbackrest-local-zst1

# ------------------------------------------------------------------ push
log "push: $ROUNDS rounds x ${#KINDS[@]} kinds x 6 tools x $SEGMENTS segments"
printf '%s\t%s\t%s\n' \
	walship-local-zstd 'mkdir {dir}' "exec $WALSHIP push --archive {dir} --compress zstd {p} {f}" \
	walship-s3-zstd 'mkdir {dir}' "d={dir}; exec $WALSHIP push --archive s3://\${d##*/}/wal --s3-endpoint $H --compress zstd {p} {f}" \
	walship-s3tls-zstd 'mkdir {dir}' "d={dir}; exec $WALSHIP push --archive s3://\${d##*/}/wal --s3-endpoint $HS --compress zstd {p} {f}" \
	pgbackrest-local-zst1 "cp -a $TMPL_LOCAL {dir}" "exec pgbackrest $B_LOCAL --repo1-path={dir} --compress-type=zst --compress-level=1 archive-push {p}" \
	pgbackrest-s3-zst1 "cp -a $TMPL_S3 {dir}" "d={dir}; b=\${d##*/} port=$P_PUSH_TLS; exec pgbackrest $B_S3 --compress-type=zst --compress-level=1 archive-push {p}" \
	pgbackrest-s3-lz4 "cp -a $TMPL_S3 {dir}" "d={dir}; b=\${d##*/} port=$P_PUSH_TLS; exec pgbackrest $B_S3 --compress-type=lz4 archive-push {p}" \
	>"$OUT/push-tools.tsv"
timed "$S/bin/pushbench" -tools "$OUT/push-tools.tsv" -kind pgbench="$WORK/src/pgbench" -kind random="$WORK/src/random" \
	-segments "$SEGMENTS" -rounds "$ROUNDS" -target "$PUSH" -fill "$S/fill" -raw "$OUT/push.csv" \
	-ratios "$RATIOS" >"$OUT/push.txt"

# --------------------------------------------------------------- restore
# One call per segment into a fresh directory (no %p there before, as the
# server deletes it before each restore_command).
for k in "${KINDS[@]}"; do
	log "restore of $k WAL: $ROUNDS rounds x 6 tools x $SEGMENTS segments"
	R=http://127.0.0.1:$P_RESTORE RS=https://127.0.0.1:$P_RESTORE_TLS
	printf '%s\t%s\t%s\n' \
		walship-local-zstd 'mkdir {dir}' "exec $WALSHIP fetch --archive $RL/$k-walship {f} {dir}/{f}" \
		walship-s3-zstd 'mkdir {dir}' "exec $WALSHIP fetch --archive s3://walship-$k/wal --s3-endpoint $R {f} {dir}/{f}" \
		walship-s3tls-zstd 'mkdir {dir}' "exec $WALSHIP fetch --archive s3://walship-$k/wal --s3-endpoint $RS {f} {dir}/{f}" \
		pgbackrest-local-zst1 'mkdir {dir}' "exec pgbackrest $B_LOCAL --repo1-path=$RL/$k-pgbr-zst1 archive-get {f} {dir}/{f}" \
		pgbackrest-s3-zst1 'mkdir {dir}' "b=pgbr-zst1-$k port=$P_RESTORE_TLS; exec pgbackrest $B_S3 archive-get {f} {dir}/{f}" \
		pgbackrest-s3-lz4 'mkdir {dir}' "b=pgbr-lz4-$k port=$P_RESTORE_TLS; exec pgbackrest $B_S3 archive-get {f} {dir}/{f}" \
		>"$OUT/restore-$k-tools.tsv"
	timed "$S/bin/pushbench" -tools "$OUT/restore-$k-tools.tsv" -kind "$k=$WORK/src/$k" \
		-segments "$SEGMENTS" -rounds "$ROUNDS" -target "$RESTORE_OUT" -fill "$S/fill" -raw "$OUT/restore-$k.csv" \
		-ratios "$RATIOS" >"$OUT/restore-$k.txt"
done

# ----------------------------------------------------------------- fixed
log "fixed cost of one call"
mkdir -p "$MNT/fixed"
miss=0000000100000000000000FF dst=$MNT/fixed/RECOVERYXLOG hist=$MNT/fixed/RECOVERYHISTORY
R=http://127.0.0.1:$P_RESTORE RS=https://127.0.0.1:$P_RESTORE_TLS
printf '%s\t%s\n' \
	"sh -c true (the shell PostgreSQL starts)" "true" \
	"walship --version" "exec $WALSHIP --version" \
	"walship fetch local, missing segment" "exec $WALSHIP fetch --archive $RL/pgbench-walship $miss $dst" \
	"walship fetch s3 http, missing segment" "exec $WALSHIP fetch --archive s3://walship-pgbench/wal --s3-endpoint $R $miss $dst" \
	"walship fetch s3 https, missing segment" "exec $WALSHIP fetch --archive s3://walship-pgbench/wal --s3-endpoint $RS $miss $dst" \
	"walship s3 https no keep-alive, missing" "exec $WALSHIP fetch --archive s3://walship-pgbench/wal --s3-endpoint https://127.0.0.1:$P_NOKA $miss $dst" \
	"walship fetch local, missing .history" "exec $WALSHIP fetch --archive $RL/pgbench-walship 00000009.history $hist" \
	"walship fetch s3 http, missing .history" "exec $WALSHIP fetch --archive s3://walship-pgbench/wal --s3-endpoint $R 00000009.history $hist" \
	"pgbackrest get local, missing segment" "exec pgbackrest $B_LOCAL --repo1-path=$RL/pgbench-pgbr-zst1 archive-get $miss $dst" \
	"pgbackrest get s3 https, missing segment" "b=pgbr-zst1-pgbench port=$P_RESTORE_TLS; exec pgbackrest $B_S3 archive-get $miss $dst" \
	"pgbackrest get s3 no keep-alive, missing" "b=pgbr-zst1-pgbench port=$P_NOKA; exec pgbackrest $B_S3 archive-get $miss $dst" \
	>"$OUT/fixed.tsv"
timed "$S/bin/pushbench" -fixed "$OUT/fixed.tsv" -n "$FIXED_N" -warmup 3 -fill "$S/fill" -raw "$OUT/fixed.csv" >"$OUT/fixed.txt"

{
	echo "walship bench/s3.sh $STAMP"
	echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "machine:   $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
	echo "walship:   $(cd "$REPO" && git describe --always --dirty 2>/dev/null) ($("$WALSHIP" --version))"
	echo "server:    versitygw $(go version -m "$VGW" 2>/dev/null | awk '$1 == "mod" {print $3}') ($VGW), posix backend, path-style, keep-alive $( [[ $S3_KEEPALIVE == 0 ]] && echo off || echo on ), on 127.0.0.1:$P_PUSH/$P_PUSH_TLS (push, http/https), :$P_RESTORE/$P_RESTORE_TLS (restore), :$P_NOKA (https, no keep-alive)"
	echo "others:    $(pgbackrest version) (repo1-type=s3 over https, repo1-storage-verify-tls=n; posix), $(go version | cut -d' ' -f3)"
	echo "disk:      archives pushed to and segments restored to a $LOOP_MB MiB ext4 loop file system ($MNT); restore sources on $(findmnt -no SOURCE /) (in page cache)"
	echo "settings:  SEGMENTS=$SEGMENTS ROUNDS=$ROUNDS NICE=$NICE (timed commands and versitygw under nice -n $NICE ionice -c2 -n0)"
	echo "inputs:    $(cat "$WORK"/src/pgbench/.complete)"
	echo "           $(cat "$WORK"/src/random/.complete)"
	echo "load avg:  $load0 at the start of the timed runs, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
	echo
	cat "$OUT/push.txt"
	echo "Restore (same table layout: 'push' there means one fetch or archive-get call per segment; bytes/seg is the restored segment)"
	echo
	for k in "${KINDS[@]}"; do cat "$OUT/restore-$k.txt"; done
	cat "$OUT/fixed.txt"
	echo "raw numbers: $OUT/*.csv"
} >"$OUT/summary.txt"
ln -sfn "$STAMP" "$S/results/latest"
cat "$OUT/summary.txt"
