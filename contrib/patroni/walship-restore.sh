#!/bin/sh
# Patroni custom bootstrap and replica-creation method for walship
# (see patroni.yml).
#
# Patroni runs it with --scope=… --datadir=… after the arguments of its
# command line in patroni.yml, and, to create a replica, with --role=…,
# --connstring=… and the method's other settings as --name=value. It
# restores a walship backup into the data directory:
# - for a new cluster (bootstrap), the newest backup that ends before the
#   target given on the command line (--target-time '2026-12-01 18:40:50+00',
#   --target-lsn, --target-name, --target-xid, --target-timeline), or the
#   newest one on the latest timeline, promoting at the target (unless
#   --target-action says otherwise); walship restore writes the recovery
#   settings and recovery.signal, which patroni.yml tells Patroni to keep;
# - for a replica, the newest backup on the latest timeline, and no signal
#   file: Patroni writes standby.signal and its recovery_conf itself, and a
#   recovery.signal beside them would outlive the replica's promotion.
#
# Settings: WALSHIP_ARCHIVE (required), WALSHIP_BIN (default walship on
# PATH), WALSHIP_RESTORE_ARGS (more walship restore arguments, quoted as in
# a shell: WALSHIP_RESTORE_ARGS="--target-time '2026-12-01 18:40:50+00'").
set -eu
datadir= signal=recovery
# Keep the arguments that are not Patroni's, in order, as given.
n=$#
while [ "$n" -gt 0 ]; do
	arg=$1
	shift
	n=$((n - 1))
	case $arg in
	--datadir=*) datadir=${arg#--datadir=} ;;
	--role=*) signal=none ;;
	--scope=* | --connstring=* | --no_leader=* | --no_master=* | --keep_data=* | --no_params=*) ;;
	*) set -- "$@" "$arg" ;;
	esac
done
if [ -z "$datadir" ]; then
	echo "walship-restore.sh: Patroni passes --datadir=DIR; got: $*" >&2
	exit 2
fi
: "${WALSHIP_ARCHIVE:?set WALSHIP_ARCHIVE to the walship archive}"
# WALSHIP_RESTORE_ARGS is split as a shell splits it, quotes included, so
# that a time with a space stays one argument.
eval "set -- ${WALSHIP_RESTORE_ARGS:-} \"\$@\""
# A new cluster restored to a target must promote there: Patroni waits for
# the end of recovery, and the server's default, pause, would wait for ever
# (or shut down). Say --target-action pause to look before promoting, then
# SELECT pg_wal_replay_resume().
if [ "$signal" = recovery ]; then
	target= action=
	for arg; do
		case $arg in
		--target-action | --target-action=*) action=1 ;;
		--target-timeline | --target-timeline=*) ;;
		--target-*) target=1 ;;
		esac
	done
	if [ -n "$target" ] && [ -z "$action" ]; then
		set -- "$@" --target-action promote
	fi
fi
# Patroni may leave an empty or half-made directory from an earlier attempt.
exec "${WALSHIP_BIN:-walship}" restore --archive "$WALSHIP_ARCHIVE" --pgdata "$datadir" --force --signal "$signal" "$@"
