#!/usr/bin/env bash
# slurm-down.sh - stop the test SLURM cluster started by scripts/slurm-up.sh.
#
# Usage:   scripts/slurm-down.sh [--purge]
#
# Stops slurmd, slurmctld, slurmdbd, mariadbd and munged using ONLY the PID
# files slurm-up.sh recorded under ${BENCH_SLURM_DIR:-/tmp/bench-slurm}/pids
# (never pkill/killall by name: other clusters or sessions on this machine may
# run daemons with the same names). Safe to run when nothing is up.
# The state dir is kept (accounting DB, job-id counter, logs) unless --purge.
set -euo pipefail

STATE_DIR=${BENCH_SLURM_DIR:-/tmp/bench-slurm}
PIDS=$STATE_DIR/pids
PURGE=0

for arg in "$@"; do
    case $arg in
        --purge) PURGE=1 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "slurm-down: unknown argument: $arg" >&2; exit 64 ;;
    esac
done

log() { echo "slurm-down: $*" >&2; }

case $STATE_DIR in
    /*) ;;
    *) log "BENCH_SLURM_DIR must be an absolute path: $STATE_DIR"; exit 1 ;;
esac
if [[ ! -d $STATE_DIR ]]; then
    log "nothing to do ($STATE_DIR does not exist)"
    exit 0
fi

# Same lock as slurm-up.sh so an up and a down never interleave.
exec 9>"$STATE_DIR/.lock"
flock -w 180 9 || { log "timed out waiting for $STATE_DIR/.lock"; exit 1; }

# live_pid NAME: print the PID from pids/NAME.pid if that process is alive and
# really is NAME (a recycled PID must not get killed).
live_pid() {
    local name=$1 pid comm
    [[ -s $PIDS/$name.pid ]] || return 1
    pid=$(<"$PIDS/$name.pid")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$name" ]] || return 1
    echo "$pid"
}

# gone PID: the process has exited. A zombie counts as exited: the daemons
# are orphans whose parent is PID 1, which may reap them only some time later.
gone() {
    [[ ! -d /proc/$1 ]] || [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == Z ]]
}

# stop NAME GRACE: SIGTERM, wait up to GRACE seconds, then SIGKILL.
stop() {
    local name=$1 grace=$2 pid i
    if ! pid=$(live_pid "$name"); then
        rm -f "$PIDS/$name.pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        gone "$pid" && break
        sleep 0.1
    done
    if ! gone "$pid"; then
        log "$name (pid $pid) ignored SIGTERM for ${grace}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do gone "$pid" && break; sleep 0.1; done
    fi
    log "stopped $name (pid $pid)"
    rm -f "$PIDS/$name.pid"
}

# Cancel jobs first: slurmd's job step processes (slurmstepd + the user's
# program) outlive a killed slurmd and would keep running as orphans.
# Best effort - skipped if slurmctld is not (or no longer) answering.
if live_pid slurmctld >/dev/null && [[ -f $STATE_DIR/slurm.conf ]]; then
    export SLURM_CONF=$STATE_DIR/slurm.conf
    mapfile -t jobs < <(timeout 5 squeue -h -o %i 2>/dev/null || true)
    if (( ${#jobs[@]} )); then
        log "cancelling jobs: ${jobs[*]}"
        timeout 10 scancel "${jobs[@]}" 2>/dev/null || true
        # KillWait=5 in slurm.conf: steps get SIGTERM, then SIGKILL 5 s later.
        for ((i = 0; i < 100; i++)); do
            [[ -z $(timeout 5 squeue -h -t RUNNING,COMPLETING,PENDING -o %i 2>/dev/null) ]] && break
            sleep 0.1
        done
    fi
fi

# Reverse start order: compute node, controller, accounting, database, auth.
stop slurmd 10
stop slurmctld 15   # saves its state on SIGTERM (job-id counter survives restarts)
stop slurmdbd 15
stop mariadbd 30    # clean InnoDB shutdown; usually ~1 s
stop munged 10

if (( PURGE )); then
    # Refuse obviously dangerous targets; the dir must look like ours.
    if [[ $STATE_DIR == / || ! -d $STATE_DIR/pids ]]; then
        log "refusing to purge $STATE_DIR (does not look like a slurm-up.sh state dir)"
        exit 1
    fi
    rm -rf -- "$STATE_DIR"
    log "purged $STATE_DIR"
fi
log "cluster is down"
