#!/usr/bin/env bash
# A quick look at walship on S3 beside a local directory, without bench/run's
# PostgreSQL-made WAL: 16 MiB segments of random bytes (bench/s3quick),
# versitygw on loopback, every call one process as PostgreSQL makes it,
# tools interleaved round by round, medians. Also counts the requests each
# kind of call makes, and those of a `walship wait` idle for 60 s.
# bench/s3.sh is the full comparison on bench/run's inputs.
#
# Environment: WORK=/var/tmp/walship-s3quick, SEGMENTS=20, ROUNDS=5,
# S3_PORT=55471, WALSHIP_VERSITYGW (default: versitygw on PATH).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/var/tmp/walship-s3quick}
SEGMENTS=${SEGMENTS:-20}
ROUNDS=${ROUNDS:-5}
PORT=${S3_PORT:-55471}
VGW=${WALSHIP_VERSITYGW:-$(command -v versitygw || true)}
[[ -x $VGW ]] || { echo "no versitygw: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0" >&2; exit 1; }
W=$WORK/walship
mkdir -p "$WORK"
(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$W" ./cmd/walship)
[[ -d $WORK/segs ]] || (cd "$REPO" && go run ./bench/s3quick "$WORK/segs" "$SEGMENTS")
rm -rf "$WORK/vgw" "$WORK/local" && mkdir -p "$WORK/vgw/bench" "$WORK/local"
: >"$WORK/access.log"
"$VGW" --access k --secret s0123456789 --port "127.0.0.1:$PORT" --quiet --access-log "$WORK/access.log" posix "$WORK/vgw" >/dev/null 2>&1 &
VPID=$!
trap 'kill $VPID' EXIT
sleep 1
export AWS_ACCESS_KEY_ID=k AWS_SECRET_ACCESS_KEY=s0123456789 AWS_REGION=us-east-1 \
	AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_EC2_METADATA_DISABLED=true WALSHIP_S3_PATH_STYLE=true WALSHIP_LOG_LEVEL=warn

us() { local s=$(date +%s%N); "$@" >/dev/null 2>&1 || true; echo $(( ($(date +%s%N) - s) / 1000 )); }
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m/1000}'; }
mapfile -t segs < <(ls "$WORK/segs")
declare -A T
for r in $(seq "$ROUNDS"); do
	for tool in local-zstd s3-zstd local-none s3-none; do
		comp=${tool#*-} where=${tool%-*}
		arch=$WORK/local/$r-$comp
		if [[ $where == s3 ]]; then arch=s3://bench/$r-$comp; else mkdir -p "$arch"; fi
		for f in "${segs[@]}"; do T[push-$tool]+="$(us "$W" push --archive "$arch" --compress "$comp" "$WORK/segs/$f" "$f") "; done
		for f in "${segs[@]}"; do rm -f "$WORK/out"; T[fetch-$tool]+="$(us "$W" fetch --archive "$arch" "$f" "$WORK/out") "; done
		for _ in $(seq 20); do T[missing-$tool]+="$(us "$W" fetch --archive "$arch" 0000000100000000000000FF "$WORK/out") "; done
	done
	for _ in $(seq 20); do T[version]+="$(us "$W" --version) "; done
done
echo "walship on S3 (versitygw, loopback) and on a local directory, $SEGMENTS random 16 MiB segments, $ROUNDS rounds, ms per call (median)"
for k in "${!T[@]}"; do
	printf '%-20s %7s ms  (%d calls)\n' "$k" "$(tr ' ' '\n' <<<"${T[$k]}" | grep . | median)" "$(wc -w <<<"${T[$k]}")"
done | sort

# The fixed cost of one call over https (a fetch of a missing segment),
# beside http and a local directory: versitygw with a self-signed
# certificate, trusted through the system's store (SSL_CERT_FILE plus
# /etc/ssl/certs, as Go reads it) or as a CA bundle (AWS_CA_BUNDLE), with and
# without the TLS sessions kept between calls (--s3-tls-sessions).
mkdir -p "$WORK/tls"
[[ -f $WORK/tls/cert.pem ]] || openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" 2>/dev/null
TPORT=$((PORT + 1))
"$VGW" --access k --secret s0123456789 --port "127.0.0.1:$TPORT" --cert "$WORK/tls/cert.pem" --key "$WORK/tls/key.pem" \
	--keep-alive --quiet posix "$WORK/vgw" >/dev/null 2>&1 &
TPID=$!
trap 'kill $VPID $TPID' EXIT
sleep 1
M=0000000100000000000000FF
declare -A F
https=(env -u AWS_CA_BUNDLE AWS_ENDPOINT_URL=https://127.0.0.1:$TPORT SSL_CERT_FILE=$WORK/tls/cert.pem SSL_CERT_DIR=/etc/ssl/certs)
export XDG_CACHE_HOME=$WORK/cache
for r in $(seq "$ROUNDS"); do
	for _ in $(seq 20); do
		F["1 local"]+="$(us "$W" fetch --archive "$WORK/local/1-zstd" $M "$WORK/out") "
		F["2 S3 http"]+="$(us "$W" fetch --archive s3://bench/1-zstd $M "$WORK/out") "
		F["3 S3 https, system store"]+="$(us "${https[@]}" WALSHIP_S3_TLS_SESSIONS=off "$W" fetch --archive s3://bench/1-zstd $M "$WORK/out") "
		F["4 S3 https, system store, sessions kept"]+="$(us "${https[@]}" "$W" fetch --archive s3://bench/1-zstd $M "$WORK/out") "
		F["5 S3 https, CA bundle"]+="$(us "${https[@]}" AWS_CA_BUNDLE=$WORK/tls/cert.pem WALSHIP_S3_TLS_SESSIONS=off "$W" fetch --archive s3://bench/1-zstd $M "$WORK/out") "
		F["6 S3 https, CA bundle, sessions kept"]+="$(us "${https[@]}" AWS_CA_BUNDLE=$WORK/tls/cert.pem "$W" fetch --archive s3://bench/1-zstd $M "$WORK/out") "
	done
done
echo "fixed cost: walship fetch of a missing segment, ms per call (median of $((ROUNDS * 20)), interleaved)"
for k in "${!F[@]}"; do
	printf '%s %7s ms\n' "$k" "$(tr ' ' '\n' <<<"${F[$k]}" | grep . | median)"
done | sort -n | sed 's/^[0-9] /  /'
unset XDG_CACHE_HOME

n() { wc -l <"$WORK/access.log"; }
A=(--archive s3://bench/requests)
c=$(n); "$W" push "${A[@]}" "$WORK/segs/${segs[0]}" "${segs[0]}"; echo "requests: first push (records identity) $(( $(n) - c ))"
c=$(n); "$W" push "${A[@]}" "$WORK/segs/${segs[1]}" "${segs[1]}"; echo "requests: push of a new segment $(( $(n) - c ))"
c=$(n); "$W" push "${A[@]}" "$WORK/segs/${segs[1]}" "${segs[1]}"; echo "requests: identical re-push $(( $(n) - c ))"
c=$(n); "$W" fetch "${A[@]}" "${segs[1]}" "$WORK/out"; echo "requests: fetch of an archived segment $(( $(n) - c ))"
c=$(n); "$W" fetch "${A[@]}" 0000000100000000000000FF "$WORK/out" || true; echo "requests: fetch of a missing segment $(( $(n) - c ))"
for poll in 1s 5s; do
	c=$(n); timeout 60 "$W" wait "${A[@]}" --poll $poll --trigger "$WORK/trigger" 0000000100000000000000FF "$WORK/out" 2>/dev/null || true
	echo "requests: walship wait --poll $poll, idle for 60 s: $(( $(n) - c ))"
done
