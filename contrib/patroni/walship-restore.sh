#!/bin/sh
# Patroni custom bootstrap and replica-creation method for walship.
#
# Patroni runs it with --scope=… --datadir=… (and, to create a replica,
# --role=… --connstring=…). It restores the newest walship backup into the
# data directory; the recovery settings come from Patroni's recovery_conf
# (see patroni.yml), because Patroni rewrites postgresql.auto.conf.
#
# Settings: WALSHIP_ARCHIVE (required), WALSHIP_BIN (default walship on
# PATH), WALSHIP_RESTORE_ARGS (extra walship restore arguments, such as
# --target-time or --backup, quoted as in a shell:
# WALSHIP_RESTORE_ARGS="--target-time '2026-12-01 18:40:50+00'").
set -eu
datadir= signal=recovery
for arg in "$@"; do
	case $arg in
	--datadir=*) datadir=${arg#--datadir=} ;;
	# Creating a replica: Patroni writes standby.signal itself, and a
	# recovery.signal beside it would outlive the replica's promotion.
	--role=*) signal=none ;;
	esac
done
if [ -z "$datadir" ]; then
	echo "walship-restore.sh: Patroni passes --datadir=DIR; got: $*" >&2
	exit 2
fi
: "${WALSHIP_ARCHIVE:?set WALSHIP_ARCHIVE to the walship archive}"
# The extra arguments are split as a shell splits them, quotes included, so
# that a time with a space stays one argument.
eval "set -- ${WALSHIP_RESTORE_ARGS:-}"
# Patroni may leave an empty or half-made directory from an earlier attempt.
exec "${WALSHIP_BIN:-walship}" restore --archive "$WALSHIP_ARCHIVE" --pgdata "$datadir" --force --signal "$signal" "$@"
