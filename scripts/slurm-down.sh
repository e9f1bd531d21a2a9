#!/usr/bin/env bash
# slurm-down.sh - stop the test SLURM cluster started by scripts/slurm-up.sh.
#
# Usage:   scripts/slurm-down.sh [--purge] [--only DAEMON]
#
# Stops slurmd, slurmctld, slurmdbd, mariadbd and munged by the PID files slurm-up.sh recorded
# (never by name: other clusters on this machine may run daemons with the same names); running
# jobs are cancelled first. --only stops one daemon (tests use it to take the controller away).
# The state dir (accounting DB, job-id counter, logs) is kept unless --purge, which deletes it
# only if slurm-up.sh made it. Safe to run when nothing is up.
set -euo pipefail
SELF=slurm-down
# shellcheck source=slurm/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/slurm/lib.sh"

PURGE=0 ONLY=
while (( $# )); do
    case $1 in
        --purge) PURGE=1 ;;
        --only) ONLY=${2:?--only needs a daemon name}; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
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

if [[ -n $ONLY ]]; then
    stop_daemon "$ONLY"
    exit 0
fi
# Cancel jobs first: their steps (slurmstepd + the program) would outlive a stopped slurmd.
if running slurmctld; then
    mapfile -t jobs < <(timeout 5 squeue -h -o %i 2>/dev/null || true)
    if (( ${#jobs[@]} )); then
        log "cancelling jobs: ${jobs[*]}"
        timeout 10 scancel "${jobs[@]}" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do  # KillWait=5: steps get SIGTERM, then SIGKILL 5 s later
            [[ -z $(timeout 5 squeue -h -o %i 2>/dev/null) ]] && break
            sleep 0.1
        done
    fi
fi
for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    stop_daemon "${DAEMONS[i]}"
done
if (( PURGE )); then
    rm -rf -- "$STATE_DIR"
    log "purged $STATE_DIR"
fi
log "cluster is down"
