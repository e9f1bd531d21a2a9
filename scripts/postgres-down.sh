#!/usr/bin/env bash
# postgres-down.sh - stop the test PostgreSQL server started by scripts/postgres-up.sh.
#
# Usage:   scripts/postgres-down.sh [--purge]
#
# Stops the server by the PID file postgres-up.sh recorded (never by name: the machine may run
# other PostgreSQL servers). The state dir (cluster, URL file, logs) is kept unless --purge, which
# deletes it only if postgres-up.sh made it. Safe to run when nothing is up.
set -euo pipefail
SELF=postgres-down
# shellcheck source=postgres/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/postgres/lib.sh"

PURGE=0
while (( $# )); do
    case $1 in
        --purge) PURGE=1 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) log "unknown argument: $1"; exit 64 ;;
    esac
    shift
done
[[ $(id -u) -eq 0 ]] || skip "must run as root (uid is $(id -u))"
if ! trust_state_dir; then
    log "nothing to do ($STATE_DIR does not exist)"
    exit 0
fi
take_lock
stop_server
if (( PURGE )); then
    rm -rf -- "${STATE_DIR:?}"
    log "purged $STATE_DIR"
fi
