#!/usr/bin/env bash
# One restore_command call per segment, the way PostgreSQL makes it (%p
# removed first, /bin/sh -c), walship fetch against cp, on pgbench WAL and
# on WAL of random rows, from a zstd and from a raw archive (bench/fetchbench).
# The segments are those bench/fetch.sh archives; it is run first (ROUNDS=0,
# no replay) for a kind whose WAL is not there yet.
#
# Needs root (bench/fetch.sh's runuser), PostgreSQL 15 and Go.
#
# Environment:
#   WORK=/var/tmp/walship-bench-fetch   bench/fetch.sh's work dir
#   KINDS="pgbench random"   SEGMENTS=20 (of each kind)   ROUNDS=5
#   SRC=$REPO       the source tree walship is built from
#   BASE            an older walship binary, timed in the same rounds
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/var/tmp/walship-bench-fetch}
KINDS=${KINDS:-pgbench random}
BIN=$WORK/bin
mkdir -p "$BIN"
(cd "${SRC:-$REPO}" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$BIN/walship" ./cmd/walship)
(cd "$REPO" && go build -o "$BIN/fetchbench" ./bench/fetchbench)
args=()
for k in $KINDS; do
	if [[ ! -d $WORK/$k/archive-raw/wal ]]; then
		ROUNDS=0 KIND=$k WORK=$WORK SRC=${SRC:-$REPO} bash "$REPO/bench/fetch.sh" >&2
	fi
	args+=(-kind "$k=$WORK/$k/archive-raw/wal")
done
[[ -f $WORK/fill ]] || truncate -s 256G "$WORK/fill"
exec "$BIN/fetchbench" -walship "$BIN/walship" -dir "$WORK/calls" -fill "$WORK/fill" \
	-segments "${SEGMENTS:-20}" -rounds "${ROUNDS:-5}" ${BASE:+-base "$BASE"} "${args[@]}"
