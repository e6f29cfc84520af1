#!/usr/bin/env bash
# walship over SFTP against scp, to an OpenSSH sshd on this host's loopback.
#
#   push:    walship push --archive sftp://… (zstd, none)  vs  scp SEGMENT host:DIR/
#   restore: walship wait --archive sftp://… (zstd, none)  vs  scp host:DIR/SEGMENT .
#   fixed:   one call for a missing file: walship wait of a .history, scp
#
# Every call is one process, as PostgreSQL makes them (bench/pushbench, the
# harness bench/run uses: interleaved rounds, fresh target per pass, page
# cache topped up between passes). Each walship and scp call makes its own
# SSH connection (walship keeps one per process). The inputs are bench/run's
# cached 16 MiB segments of pgbench WAL and of WAL of random rows (made by
# `bench/run prepare` when missing). Targets are on an ext4 loop file system
# of their own. scp does not fsync; walship fsyncs (fsync@openssh.com) before
# it renames.
#
# Run as root (sshd, loop mount): bash bench/sftp.sh
# Environment: WORK (default /var/tmp/walship-bench, shared with bench/run),
# SEGMENTS=100, ROUNDS=5, LOOP_MB=4096, SSH_PORT=55422, NICE=-10.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/var/tmp/walship-bench}
S=$WORK/sftp
SEGMENTS=${SEGMENTS:-100}
ROUNDS=${ROUNDS:-5}
LOOP_MB=${LOOP_MB:-4096}
SSH_PORT=${SSH_PORT:-55422}
NICE=${NICE:--10}
WALSHIP=$S/bin/walship # built here: bench/run may be using bin/walship
MNT=$S/mnt
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$S/results/$STAMP
KINDS=(pgbench random)

log() { printf '\n== %s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench/sftp: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (sshd, loop mount)"
[[ -x /usr/sbin/sshd ]] || die "no /usr/sbin/sshd: apt-get install openssh-server"
command -v scp >/dev/null || die "no scp: apt-get install openssh-client"
mkdir -p "$S/bin" "$OUT"
unset SSH_AUTH_SOCK # keys from files only, for both tools

if [[ ! -f $WORK/src/pgbench/.complete || ! -f $WORK/src/random/.complete ]]; then
	log "generating the input WAL with bench/run prepare"
	WORK=$WORK bash "$REPO/bench/run" prepare
fi
log "building walship and pushbench"
(
	cd "$REPO"
	export CGO_ENABLED=0
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(git describe --always --dirty 2>/dev/null || echo dev)" -o "$WALSHIP" ./cmd/walship
	go build -trimpath -o "$S/bin/pushbench" ./bench/pushbench
)

# ------------------------------------------------------------------- sshd
SSHD_PID= LOOPDEV=
cleanup() {
	set +e
	[[ -z $SSHD_PID ]] || kill "$SSHD_PID" 2>/dev/null
	if [[ -n $LOOPDEV ]]; then
		umount "$MNT" 2>/dev/null
		losetup -d "$LOOPDEV" 2>/dev/null
	fi
	rm -f "$S/fill"
}
trap cleanup EXIT

. "$REPO/bench/sshd.sh"
K=$S/ssh
start_sshd "$K" "$SSH_PORT" || die "cannot start sshd"

URL=sftp://root@127.0.0.1:$SSH_PORT
W="$WALSHIP push --identity $K/id_ed25519 --known-hosts $K/known_hosts"
WW="$WALSHIP wait --identity $K/id_ed25519 --known-hosts $K/known_hosts"
SCP="scp -q -B -P $SSH_PORT -i $K/id_ed25519 -o IdentitiesOnly=yes -o UserKnownHostsFile=$K/known_hosts -o StrictHostKeyChecking=yes"

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

# Archives the restore runs read from, one per kind and compression, kept
# between runs (on the root file system: they are read from page cache).
R=$S/restore-src
for k in "${KINDS[@]}"; do
	for c in zstd none; do
		[[ $(cat "$R/$k-$c/.complete" 2>/dev/null) == "$SEGMENTS" ]] && continue
		log "archiving $SEGMENTS segments of $k WAL into $R/$k-$c"
		rm -rf "${R:?}/$k-$c"
		mkdir -p "$R/$k-$c"
		for f in $(ls "$WORK/src/$k" | head -n "$SEGMENTS"); do
			WALSHIP_LOG_LEVEL=warn "$WALSHIP" push --archive "$R/$k-$c" --compress $c "$WORK/src/$k/$f" "$f"
		done
		echo "$SEGMENTS" >"$R/$k-$c/.complete"
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
log "push: $ROUNDS rounds x ${#KINDS[@]} kinds x 3 tools x $SEGMENTS segments"
printf '%s\t%s\t%s\n' \
	walship-sftp-zstd 'mkdir {dir}' "$W --archive $URL{dir} --compress zstd {p} {f}" \
	walship-sftp-none 'mkdir {dir}' "$W --archive $URL{dir} --compress none {p} {f}" \
	scp 'mkdir {dir}' "$SCP {p} root@127.0.0.1:{dir}/{f}" \
	>"$OUT/push-tools.tsv"
timed "$S/bin/pushbench" -tools "$OUT/push-tools.tsv" -kind pgbench="$WORK/src/pgbench" -kind random="$WORK/src/random" \
	-segments "$SEGMENTS" -rounds "$ROUNDS" -target "$MNT" -fill "$S/fill" -raw "$OUT/push.csv" \
	-ratios walship-sftp-zstd/scp,walship-sftp-none/scp >"$OUT/push.txt"

# --------------------------------------------------------------- restore
# pushbench's tools see only the segment's name, so each kind runs alone,
# with tools reading that kind's archives; {p} is unused.
for k in "${KINDS[@]}"; do
	log "restore of $k WAL: $ROUNDS rounds x 3 tools x $SEGMENTS segments"
	printf '%s\t%s\t%s\n' \
		walship-wait-zstd 'mkdir {dir}' "$WW --archive $URL$R/$k-zstd {f} {dir}/{f}" \
		walship-wait-none 'mkdir {dir}' "$WW --archive $URL$R/$k-none {f} {dir}/{f}" \
		scp 'mkdir {dir}' "$SCP root@127.0.0.1:$R/$k-none/wal/{f} {dir}/{f}" \
		>"$OUT/restore-$k-tools.tsv"
	timed "$S/bin/pushbench" -tools "$OUT/restore-$k-tools.tsv" -kind "$k=$WORK/src/$k" \
		-segments "$SEGMENTS" -rounds "$ROUNDS" -target "$MNT" -fill "$S/fill" -raw "$OUT/restore-$k.csv" \
		-ratios walship-wait-zstd/scp,walship-wait-none/scp >"$OUT/restore-$k.txt"
done

# ----------------------------------------------------------------- fixed
log "fixed cost of one call"
mkdir -p "$MNT/fixed"
printf '%s\t%s\n' \
	"walship wait (sftp), missing .history" "$WW --archive $URL$R/pgbench-zstd 00000009.history $MNT/fixed/RECOVERYHISTORY" \
	"scp of a missing file" "$SCP root@127.0.0.1:$R/pgbench-none/wal/00000009.history $MNT/fixed/RECOVERYHISTORY" \
	>"$OUT/fixed.tsv"
timed "$S/bin/pushbench" -fixed "$OUT/fixed.tsv" -n 100 -warmup 3 -fill "$S/fill" -raw "$OUT/fixed.csv" >"$OUT/fixed.txt"

{
	echo "walship bench/sftp.sh $STAMP"
	echo "machine:   $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
	echo "walship:   $(cd "$REPO" && git describe --always --dirty 2>/dev/null) ($("$WALSHIP" --version))"
	echo "ssh:       $(ssh -V 2>&1); sshd on 127.0.0.1:$SSH_PORT, internal-sftp, ed25519 keys"
	echo "target:    $LOOP_MB MiB ext4 loop file system ($MNT)"
	echo "settings:  SEGMENTS=$SEGMENTS ROUNDS=$ROUNDS NICE=$NICE"
	echo "inputs:    $(cat "$WORK"/src/pgbench/.complete)"
	echo "           $(cat "$WORK"/src/random/.complete)"
	echo "load avg:  $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
	echo
	cat "$OUT/push.txt"
	echo "Restore (same table layout; 'push' there means one restore call per segment)"
	echo
	for k in "${KINDS[@]}"; do cat "$OUT/restore-$k.txt"; done
	cat "$OUT/fixed.txt"
	echo "raw numbers: $OUT/*.csv"
} >"$OUT/summary.txt"
cat "$OUT/summary.txt"
