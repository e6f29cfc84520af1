#!/usr/bin/env bash
# RPO of whole-segment shipping alone versus walship tail at 1 s, 200 ms and
# 50 ms, and the daemon's CPU and archive bytes; see rpo_test.go. Runs as
# root or as a user that can run PostgreSQL (internal/pgtest decides).
#
#   bench/tail/run.sh                     # 3 interleaved rounds, 20 s of load each
#   ROUNDS=5 LOAD=30s RATE=1000 bench/tail/run.sh
#
# The table is printed at the end and written to $BENCH_OUT
# (default: bench-tail-<UTC time>.txt in the current directory).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
export WALSHIP_BENCH_TAIL=1
export BENCH_OUT=${BENCH_OUT:-$PWD/bench-tail-$(date -u +%Y%m%dT%H%M%SZ).txt}
cd "$REPO"
go test -count=1 -timeout 120m -v -run '^TestTailRPO$' ./bench/tail
echo "results: $BENCH_OUT"
