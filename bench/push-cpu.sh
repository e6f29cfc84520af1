#!/usr/bin/env bash
# CPU time and page faults of walship push, per push, as perf stat counts
# them: `bash bench/push-cpu.sh BIN [BIN...]` (no root; perf needed). For
# each binary, kind of WAL (bench/run's cached pgbench and random segments)
# and compression, 10 repetitions of 6 pushes into a local archive that
# already holds its identity; binaries interleaved, twice. BENCHMARKS.md,
# "Since then: incompressible WAL without copies".
set -euo pipefail
WORK=${WORK:-/var/tmp/walship-bench}
DIR=${DIR:-/var/tmp/walship-push-cpu}
command -v perf >/dev/null || { echo "no perf: apt-get install linux-perf" >&2; exit 1; }
(( $# > 0 )) || { echo "usage: $0 WALSHIP_BINARY..." >&2; exit 2; }
one() { # BIN KIND COMPRESS
	local b=$1 k=$2 c=$3 src=$WORK/src/$2 segs first rest
	segs=($(ls "$src" | grep -E '^[0-9A-F]{24}$' | head -7))
	first=${segs[0]} rest=${segs[*]:1}
	rm -rf "$DIR" && mkdir -p "$DIR"
	"$b" --log-level warn push --archive "$DIR" --compress "$c" "$src/$first" "$first"
	perf stat -x, -e task-clock,page-faults -r 10 bash -c "
		for f in $rest; do '$b' --log-level warn push --archive '$DIR' --compress $c '$src'/\$f \$f; done
		find '$DIR/wal' -name '0*' -newer '$DIR/walship.json' -delete" 2>&1 >/dev/null |
		awk -F, -v b="$b" -v k="$k" -v c="$c" '
			$3 == "task-clock" { ms = $1 / 6 }
			$3 == "page-faults" { pf = $1 / 6 }
			END { printf "%-28s %-8s %-5s %7.1f ms CPU %7.0f page faults a push\n", b, k, c, ms, pf }'
}
for _ in 1 2; do
	for k in pgbench random; do
		for c in zstd none; do
			for b in "$@"; do one "$b" "$k" "$c"; done
		done
	done
done
rm -rf "$DIR"
