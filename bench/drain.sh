#!/usr/bin/env bash
# Catch-up after an outage of the archive (BENCHMARKS.md, "Catch-up after
# an outage"), on a real PostgreSQL 15 primary whose own archiver calls
# each tool's archive_command:
#
# 1. A backlog: BACKLOG segments of pgbench WAL (default 200) marked ready
#    in pg_wal/archive_status while archive_command fails ('exit 1', an
#    unwritable archive). They are made once; wal_keep_size keeps them, and
#    each pass marks the same segments ready again (.done -> .ready).
# 2. The archive comes back: archive_command is set to the tool, into a
#    fresh archive, and the drain is timed from the reload until no segment
#    of the backlog is ready any more. Tools interleaved, ROUNDS rounds.
# 3. A sustained load: pgbench for LOAD seconds (default 60) with walship
#    push (its defaults) as archive_command; the number of ready segments is
#    sampled every second: a flat backlog means archiving keeps up.
#
# Tools: walship push (zstd, none; its defaults, one segment per call, and
# with --look-ahead 8 --jobs 2) and pgBackRest 2.45 archive-push
# with archive-async=y and process-max=2 (lz4, zst level 1, none). With
# SFTP=1, also walship push into the same kind of fresh archive through an
# OpenSSH sshd on loopback (bench/sshd.sh): one segment per call, and
# --look-ahead 8 with --jobs 2 and 4 (pgBackRest 2.45 has no SFTP
# repository).
#
# Needs root (runuser), PostgreSQL 15 in /usr/lib/postgresql/15/bin,
# pgbackrest, and bin/walship (make build); openssh-server for SFTP=1.
#
# Environment: WORK=/var/tmp/walship-bench-drain, BACKLOG=200, ROUNDS=3,
# LOAD=60 (0 skips the sustained load), TOOLS (a space-separated subset),
# SFTP=0, SSH_PORT=55423.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/var/tmp/walship-bench-drain}
BACKLOG=${BACKLOG:-200}
ROUNDS=${ROUNDS:-3}
LOAD=${LOAD:-60}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGPORT=${PGPORT:-55443}
WALSHIP=${WALSHIP:-$REPO/bin/walship}
SFTP=${SFTP:-0}
SSH_PORT=${SSH_PORT:-55423}
PGDATA=$WORK/pgdata
SOCK=$WORK/run
OUT=$WORK/results/$(date -u +%Y%m%dT%H%M%SZ)
log() { printf '\n== %s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'drain: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root (runuser)"
[[ -x $PGBIN/initdb ]] || die "no PostgreSQL 15 in $PGBIN"
[[ -x $WALSHIP ]] || die "no $WALSHIP: run make build"
command -v pgbackrest >/dev/null || die "no pgbackrest: apt-get install pgbackrest"
mkdir -p "$WORK" "$OUT"
chown postgres: "$WORK"
# A copy: a rebuild while the benchmark runs does not change what it measures.
install -m 755 "$WALSHIP" "$WORK/walship"
WALSHIP=$WORK/walship

as_pg() { runuser -u postgres -- "$@"; }
psql_() { as_pg "$PGBIN/psql" -X -q -At -h "$SOCK" -p "$PGPORT" -v ON_ERROR_STOP=1 "$@"; }
pg_running() { as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }
pg_start() {
	pg_running && return
	install -d -o postgres -g postgres -m 755 "$SOCK"
	as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/postgres.log" -w -t 120 start >/dev/null
}
# The server is stopped at the end: left running, it would also keep the
# caller's file descriptors (bench/run's flock on the machine's PostgreSQL
# lock among them). Its data directory, and so the backlog, stays.
SSHD_PID=
trap 'pg_running && as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null; [[ -z $SSHD_PID ]] || kill "$SSHD_PID"' EXIT
set_archive_command() { # COMMAND: set it and make the archiver see it
	psql_ -d postgres -c "alter system set archive_command = \$\$$1\$\$" -c "select pg_reload_conf()" >/dev/null
}
ready_count() { find "$PGDATA/pg_wal/archive_status" -name '*.ready' | wc -l; }

# ---------------------------------------------------------------- the cluster
if [[ ! -f $PGDATA/PG_VERSION ]]; then
	log "initdb $PGDATA"
	install -d -o postgres -g postgres -m 700 "$PGDATA"
	as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust --wal-segsize=16 >/dev/null
	cat >>"$PGDATA/postgresql.conf" <<-EOF
		port = $PGPORT
		listen_addresses = ''
		unix_socket_directories = '$SOCK'
		archive_mode = on
		archive_command = 'exit 1'
		wal_level = replica
		wal_keep_size = '8GB'        # the backlog stays in pg_wal between passes
		max_wal_size = '8GB'
		checkpoint_timeout = '30s'   # full-page images, as in production
		shared_buffers = '256MB'
		synchronous_commit = off
		autovacuum = off
	EOF
fi
touch "$WORK/postgres.log" && chown postgres: "$WORK/postgres.log"
pg_start
set_archive_command 'exit 1'

# The pgBackRest stanza: a repo made once by stanza-create, copied per pass.
PGBR_CONF=$WORK/pgbackrest.conf
PGBR_TEMPLATE=$WORK/pgbr-template
write_pgbr_conf() { # REPO SPOOL
	cat >"$PGBR_CONF" <<-EOF
		[global]
		repo1-path=$1
		log-level-console=warn
		log-level-stderr=warn
		log-level-file=off
		lock-path=$WORK/pgbr-lock
		spool-path=$2
		archive-async=y
		process-max=2

		[drain]
		pg1-path=$PGDATA
		pg1-socket-path=$SOCK
		pg1-port=$PGPORT
		pg1-user=postgres
	EOF
	chmod 644 "$PGBR_CONF"
}
install -d -o postgres "$WORK/pgbr-lock"
sysid=$(as_pg "$PGBIN/pg_controldata" "$PGDATA" | awk -F': *' '/system identifier/ {print $2}')
if ! grep -qs "^db-system-id=$sysid$" "$PGBR_TEMPLATE/archive/drain/archive.info"; then
	rm -rf "$PGBR_TEMPLATE"
	install -d -o postgres "$PGBR_TEMPLATE"
	write_pgbr_conf "$PGBR_TEMPLATE" "$WORK/pgbr-spool"
	as_pg pgbackrest --config="$PGBR_CONF" --stanza=drain stanza-create
fi

# ---------------------------------------------------------------- the backlog
BACKLOG_LIST=$WORK/backlog.txt
if [[ ! -s $BACKLOG_LIST ]] || (( $(wc -l <"$BACKLOG_LIST") < BACKLOG )); then
	log "making a backlog of $BACKLOG segments of pgbench WAL (archive_command fails meanwhile)"
	if [[ $(psql_ -d postgres -c "select count(*) from pg_database where datname = 'bench'") == 0 ]]; then
		psql_ -d postgres -c "create database bench"
		as_pg "$PGBIN/pgbench" -q -h "$SOCK" -p "$PGPORT" -i -s 50 -I dtGvp bench >/dev/null 2>&1
	fi
	psql_ -d postgres -c "checkpoint" -c "select pg_switch_wal()" >/dev/null
	before=$(ready_count)
	while (( $(ready_count) - before < BACKLOG + 2 )); do
		as_pg "$PGBIN/pgbench" -n -h "$SOCK" -p "$PGPORT" -c 4 -j 2 -T 10 bench >/dev/null
		printf '\r   %d segments ready' "$(( $(ready_count) - before ))" >&2
	done
	printf '\n' >&2
	# The newest BACKLOG ready segments (the workload's, whole).
	find "$PGDATA/pg_wal/archive_status" -name '*.ready' -printf '%f\n' | sed 's/\.ready$//' |
		grep -E '^[0-9A-F]{24}$' | sort | tail -n "$BACKLOG" >"$BACKLOG_LIST"
fi
mapfile -t SEGS <"$BACKLOG_LIST"
SEGS=("${SEGS[@]:0:$BACKLOG}")
mark_ready() { # every backlog segment ready again, every other ready file done
	set_archive_command 'exit 1'
	local st=$PGDATA/pg_wal/archive_status f
	for f in "$st"/*.ready; do [[ -e $f ]] && mv "$f" "${f%.ready}.done"; done
	for f in "${SEGS[@]}"; do
		[[ -f $PGDATA/pg_wal/$f ]] || die "segment $f is gone from pg_wal"
		[[ -e $st/$f.done ]] && mv "$st/$f.done" "$st/$f.ready"
		[[ -e $st/$f.ready ]] || touch "$st/$f.ready"
	done
	chown postgres: "$st"/*.ready
}

# ---------------------------------------------------------------- the tools
c="--config=$PGBR_CONF --stanza=drain"
declare -A CMD=(
	[walship-zstd]="$WALSHIP push --archive {dir} %p %f"
	[walship-zstd-ahead8]="$WALSHIP push --archive {dir} --look-ahead 8 --jobs 2 %p %f"
	[walship-none]="$WALSHIP push --archive {dir} --compress none %p %f"
	[walship-s2]="$WALSHIP push --archive {dir} --compress s2 %p %f"
	[walship-s2-ahead8]="$WALSHIP push --archive {dir} --compress s2 --look-ahead 8 --jobs 2 %p %f"
	[walship-s2-ahead16-jobs8]="$WALSHIP push --archive {dir} --compress s2 --look-ahead 16 --jobs 8 %p %f"
	[walship-none-ahead8]="$WALSHIP push --archive {dir} --compress none --look-ahead 8 --jobs 2 %p %f"
	[pgbackrest-async-lz4]="pgbackrest $c --compress-type=lz4 archive-push %p"
	[pgbackrest-async-zst1]="pgbackrest $c --compress-type=zst --compress-level=1 archive-push %p"
	[pgbackrest-async-none]="pgbackrest $c --compress-type=none archive-push %p"
)
DEFAULT_TOOLS="walship-zstd walship-zstd-ahead8 walship-s2 walship-s2-ahead8 walship-none walship-none-ahead8 pgbackrest-async-lz4 pgbackrest-async-zst1 pgbackrest-async-none"
if [[ $SFTP == 1 ]]; then
	. "$REPO/bench/sshd.sh"
	start_sshd "$WORK/ssh" "$SSH_PORT" || die "cannot start sshd"
	# The archiver runs as postgres: its own copy of the client key. It logs
	# in as root (sshd refuses the locked postgres account without PAM).
	install -o postgres -m 600 "$SSH_KEY" "$WORK/ssh/postgres_key"
	sftp="$WALSHIP push --identity $WORK/ssh/postgres_key --known-hosts $SSH_KNOWN_HOSTS --archive sftp://root@127.0.0.1:$SSH_PORT{dir}"
	CMD[walship-sftp-zstd]="$sftp %p %f"
	CMD[walship-sftp-zstd-ahead8]="$sftp --look-ahead 8 --jobs 2 %p %f"
	CMD[walship-sftp-zstd-ahead8-jobs4]="$sftp --look-ahead 8 --jobs 4 %p %f"
	CMD[walship-sftp-s2-ahead8-jobs4]="$sftp --compress s2 --look-ahead 8 --jobs 4 %p %f"
	DEFAULT_TOOLS+=" walship-sftp-zstd walship-sftp-zstd-ahead8 walship-sftp-zstd-ahead8-jobs4 walship-sftp-s2-ahead8-jobs4"
fi
TOOLS=(${TOOLS:-$DEFAULT_TOOLS})

drain() { # TOOL ROUND: one timed drain into a fresh archive
	local tool=$1 dir=$WORK/archive/$1
	mark_ready
	rm -rf "$WORK/archive" "$WORK/pgbr-spool"
	install -d -o postgres "$WORK/archive" "$WORK/pgbr-spool"
	if [[ $tool == pgbackrest* ]]; then
		cp -a "$PGBR_TEMPLATE" "$dir"
		write_pgbr_conf "$dir" "$WORK/pgbr-spool"
	else
		install -d -o postgres "$dir"
	fi
	sync
	local cmd=${CMD[$tool]//\{dir\}/$dir} t0 t1
	t0=$(date +%s.%N)
	set_archive_command "$cmd"
	local n
	while :; do
		n=0
		for f in "${SEGS[@]}"; do [[ -e $PGDATA/pg_wal/archive_status/$f.ready ]] && n=$((n + 1)) && break; done
		(( n == 0 )) && break
		sleep 0.05
	done
	t1=$(date +%s.%N)
	set_archive_command 'exit 1'
	local secs
	secs=$(echo "$t1 - $t0" | bc)
	printf '%s\t%s\t%s\n' "$tool" "$2" "$secs" >>"$OUT/drain.tsv"
	printf '   %-24s round %d: %6.2f s (%.1f ms a segment)\n' "$tool" "$2" "$secs" "$(echo "$secs * 1000 / ${#SEGS[@]}" | bc -l)" >&2
}

log "drain of ${#SEGS[@]} segments, ${#TOOLS[@]} tools, $ROUNDS rounds (load $(cut -d' ' -f1-3 /proc/loadavg))"
printf 'tool\tround\tseconds\n' >"$OUT/drain.tsv"
for (( r = 1; r <= ROUNDS; r++ )); do
	for (( i = 0; i < ${#TOOLS[@]}; i++ )); do
		drain "${TOOLS[(i + r) % ${#TOOLS[@]}]}" "$r"
	done
done
python3 - "$OUT/drain.tsv" "${#SEGS[@]}" <<-'EOF'
	import csv, statistics, sys
	rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
	segs = int(sys.argv[2])
	by = {}
	for r in rows:
	    by.setdefault(r["tool"], []).append(float(r["seconds"]))
	med = {t: statistics.median(v) for t, v in by.items()}
	print(f"\nDrain of a {segs}-segment backlog of pgbench WAL (median of {len(next(iter(by.values())))} rounds)\n")
	print("| tool | drain, s | ms a segment | MB/s of WAL |")
	print("|---|---|---|---|")
	for t, m in sorted(med.items(), key=lambda kv: kv[1]):
	    print(f"| {t} | {m:.2f} | {m*1000/segs:.1f} | {segs*16/m:.0f} |")
	print("\n| ratio of medians | |")
	print("|---|---|")
	for a, b in [("walship-zstd", "pgbackrest-async-zst1"), ("walship-zstd", "pgbackrest-async-lz4"),
	             ("walship-s2", "pgbackrest-async-zst1"), ("walship-s2", "pgbackrest-async-lz4"),
	             ("walship-s2-ahead8", "pgbackrest-async-zst1"), ("walship-s2-ahead8", "pgbackrest-async-lz4"),
	             ("walship-s2-ahead16-jobs8", "pgbackrest-async-zst1"), ("walship-s2-ahead16-jobs8", "pgbackrest-async-lz4"),
	             ("walship-s2", "walship-zstd"), ("walship-s2-ahead8", "walship-s2"), ("walship-s2-ahead16-jobs8", "walship-s2"),
	             ("walship-none", "pgbackrest-async-none"), ("walship-zstd-ahead8", "walship-zstd"),
	             ("walship-none-ahead8", "walship-none"), ("walship-sftp-zstd", "walship-zstd"),
	             ("walship-sftp-zstd-ahead8", "walship-sftp-zstd"), ("walship-sftp-zstd-ahead8-jobs4", "walship-sftp-zstd"),
	             ("walship-sftp-s2-ahead8-jobs4", "walship-sftp-zstd"), ("walship-sftp-zstd-ahead8-jobs4", "pgbackrest-async-zst1"),
	             ("walship-sftp-s2-ahead8-jobs4", "pgbackrest-async-lz4")]:
	    if a in med and b in med:
	        print(f"| {a} / {b} | {med[a]/med[b]:.2f} |")
EOF

# ------------------------------------------------------------ sustained load
if (( LOAD > 0 )); then
	log "sustained load: pgbench -c 4 -j 2 for $LOAD s, archive_command = walship push (defaults)"
	mark_ready
	for f in "$PGDATA"/pg_wal/archive_status/*.ready; do mv "$f" "${f%.ready}.done"; done
	rm -rf "$WORK/archive" && install -d -o postgres "$WORK/archive/load"
	set_archive_command "$WALSHIP push --archive $WORK/archive/load %p %f"
	lsn0=$(psql_ -d postgres -c "select pg_current_wal_lsn()")
	as_pg "$PGBIN/pgbench" -n -h "$SOCK" -p "$PGPORT" -c 4 -j 2 -T "$LOAD" bench >"$OUT/pgbench.txt" 2>&1 &
	pid=$!
	printf 'second\tready\n' >"$OUT/load.tsv"
	s=0
	while kill -0 "$pid" 2>/dev/null; do
		printf '%d\t%d\n' "$s" "$(ready_count)" >>"$OUT/load.tsv"
		sleep 1
		s=$((s + 1))
	done
	wait "$pid" || true
	lsn1=$(psql_ -d postgres -c "select pg_current_wal_lsn()")
	mb=$(psql_ -d postgres -c "select round(('$lsn1'::pg_lsn - '$lsn0'::pg_lsn) / 1048576.0)")
	set_archive_command 'exit 1'
	python3 - "$OUT/load.tsv" "$mb" "$LOAD" <<-'EOF'
		import csv, statistics, sys
		v = [int(r["ready"]) for r in csv.DictReader(open(sys.argv[1]), delimiter="\t")]
		mb, secs = float(sys.argv[2]), float(sys.argv[3])
		print(f"\nSustained load: {mb:.0f} MiB of WAL in {secs:.0f} s ({mb/secs:.1f} MiB/s, {mb/16/secs:.1f} segments/s)")
		print(f"segments ready, sampled each second: max {max(v)}, median {statistics.median(v)}, last {v[-1]}")
		third = max(len(v) // 3, 1)
		print(f"mean of the first third {statistics.mean(v[:third]):.2f}, of the last third {statistics.mean(v[-third:]):.2f} (flat: no growth)")
	EOF
fi
echo "results: $OUT" >&2
