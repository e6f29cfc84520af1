#!/usr/bin/env bash
# The fixed cost of one walship call, and where it goes (BENCHMARKS.md,
# "Start-up"). PostgreSQL starts walship once per WAL file, so what a call
# costs before and after its work counts as much as the work.
#
#   bench/startup.sh [WALSHIP [BASE]]     default: bin/walship (make build)
#
# With BASE, another walship binary (an older build), its four calls run
# in the same interleaved rounds, with ratios WALSHIP / BASE, and its
# start-up profile follows.
#
# Times, interleaved, N calls each (started directly, not through a shell):
# /bin/true, a minimal Go program built here, walship --version, a fetch of
# a missing segment, a wait-style missing .history and an identical re-push
# (of a 1 MiB segment from wal/testdata), all on a local archive; medians,
# percentiles, ratios to the minimal Go program. Then the start-up profile:
# binary size, page faults, CPU and RSS per call (perf stat, GNU time), and
# GODEBUG=inittrace=1's package inits (median of 20 runs).
# Needs Go, python3 and, for the fault counts, perf. No root, no PostgreSQL.
#
# Environment: N=500 calls of each command; WARMUP=5 untimed first calls.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WALSHIP=$(realpath "${1:-$REPO/bin/walship}")
BASE=${2:+$(realpath "$2")}
N=${N:-500}
WARMUP=${WARMUP:-5}
[[ -x $WALSHIP ]] || { echo "startup.sh: no $WALSHIP: run make build" >&2; exit 1; }

T=$(mktemp -d /tmp/walship-startup.XXXXXX)
trap 'rm -rf "$T"' EXIT
(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$T/minimal" ./bench/minimal &&
	CGO_ENABLED=0 go build -trimpath -o "$T/pushbench" ./bench/pushbench)

seg=000000010000000000000007
a=$T/archive
mkdir "$a"
cp "$REPO/wal/testdata/$seg" "$T/$seg"
WALSHIP_LOG_LEVEL=warn "$WALSHIP" push --archive "$a" "$T/$seg" "$seg" # walship.json and the segment
cd "$T" # not a data directory: push names no server

calls() { # calls LABEL BINARY ARCHIVE: the four walship calls
	printf '%s\t%s\n' \
		"$1 --version" "$2 --version" \
		"$1 fetch (missing segment)" "$2 fetch --archive $3 000000010000000000000009 $T/RECOVERYXLOG" \
		"$1 wait (missing .history)" "$2 wait --archive $3 00000009.history $T/RECOVERYHISTORY" \
		"$1 push (identical re-push)" "$2 push --archive $3 $T/$seg $seg"
}
g="minimal Go program"
{
	printf '%s\t%s\n' "/bin/true" "/bin/true" "$g" "$T/minimal"
	calls walship "$WALSHIP" "$a"
	if [[ -n $BASE ]]; then
		mkdir "$T/base-archive"
		WALSHIP_LOG_LEVEL=warn "$BASE" push --archive "$T/base-archive" "$T/$seg" "$seg"
		calls base "$BASE" "$T/base-archive"
	fi
} >"$T/fixed.tsv"
ratios="$g//bin/true"
for c in "--version" "fetch (missing segment)" "wait (missing .history)" "push (identical re-push)"; do
	ratios+=",walship $c/$g"
	[[ -z $BASE ]] || ratios+=",base $c/$g,walship $c/base $c"
done
"$T/pushbench" -fixed "$T/fixed.tsv" -exec -n "$N" -warmup "$WARMUP" -ratios "$ratios"

# median_inits reads GODEBUG=inittrace=1 output and prints the median
# clock of each package's init, the largest first.
median_inits() {
	python3 -c '
import sys, collections, statistics as st
d = collections.defaultdict(list)
for line in sys.stdin:
    f = line.split()
    if f and f[0] == "init":
        d[f[1]].append(float(f[4]))
m = {k: st.median(v) for k, v in d.items()}
print(f"{len(m)} packages, {sum(m.values()):.2f} ms in all; the largest:")
print()
for k, v in sorted(m.items(), key=lambda kv: -kv[1])[:12]:
    print(f"    {v:.3f}  {k}")
'
}

profile() { # profile BINARY LABEL: size, faults, CPU, RSS, inits
	echo "Start-up profile of $1 ($("$1" --version))"
	echo
	echo "binary: $(stat -c %s "$1") bytes; minimal Go program: $(stat -c %s "$T/minimal") bytes"
	echo
	if command -v perf >/dev/null; then
		echo "| command | task-clock ms | page faults | max RSS KiB |"
		echo "|---|---|---|---|"
		while IFS=$'\t' read -r name cmd; do
			# shellcheck disable=SC2086 # cmd is split at spaces, as pushbench -exec does
			p=$(LC_ALL=C perf stat -x, -r 200 -e task-clock,page-faults $cmd 2>&1 >/dev/null </dev/null |
				awk -F, '$3=="task-clock"{t=$1} $3=="page-faults"{f=$1} END{printf "%.2f | %d", t, f}') || true # fetch and wait exit 1
			# shellcheck disable=SC2086
			rss=$(/usr/bin/time -f %M $cmd 2>&1 >/dev/null </dev/null | tail -1) || true
			echo "| $name | $p | $rss |"
		done < <(grep -v '^base \|^walship ' "$T/fixed.tsv"; grep "^$2 " "$T/fixed.tsv")
		echo
	fi
	echo "GODEBUG=inittrace=1 $2 --version: package inits, median of 20 runs (ms of clock)"
	echo
	for _ in $(seq 20); do GODEBUG=inittrace=1 "$1" --version 2>&1 >/dev/null; done | median_inits
	echo
}
profile "$WALSHIP" walship
[[ -z $BASE ]] || profile "$BASE" base
echo "1-minute load average now: $(cut -d' ' -f1 /proc/loadavg) ($(nproc) CPUs)"
