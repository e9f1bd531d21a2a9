#!/usr/bin/env bash
# slurm-up.sh - bring up a real single-node SLURM cluster (with accounting) for tests.
#
# Usage:   eval "$(scripts/slurm-up.sh)"      # exports SLURM_CONF for this shell
#
# Everything (configs, spool, logs, pid files, MariaDB datadir, munge key and socket) lives in one
# root-owned, private state directory, ${BENCH_SLURM_DIR:-/var/lib/bench-slurm}, which this script
# makes and marks; it refuses one it did not make, a symlink, or one others can write to. Nothing
# outside it is changed, except Debian's slurm, munge and mariadb packages, installed on first use.
# The only line printed on stdout is `export SLURM_CONF=<dir>/slurm.conf`; progress goes to stderr.
#
# Exit codes: 0 cluster up; 1 something failed (logs are tailed on stderr); 2 cannot run here (not
# root, packages not installable): callers may skip only then.
#
# Environment: BENCH_SLURM_DIR (state dir), BENCH_SLURM_PORT_BASE (slurmctld port; slurmd,
# slurmdbd and MariaDB use the next three; default 6817), BENCH_SLURM_TIMEOUT (seconds to wait for
# the cluster, default 60), BENCH_SLURM_KEEP_ON_FAILURE=1 (leave a failed cluster running).
set -euo pipefail
SELF=slurm-up
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=slurm/lib.sh
source "$HERE/slurm/lib.sh"

[[ $(id -u) -eq 0 ]] || skip "must run as root (uid is $(id -u))"
command -v start-stop-daemon >/dev/null || skip "start-stop-daemon (Debian's dpkg) is not available"
trust_state_dir create
take_lock
umask 077
mkdir -p "$RUN" "$PIDS" "$LOGS" "$STATE_DIR/spool/slurmctld" "$STATE_DIR/spool/slurmd" "$STATE_DIR/munge"
chmod 0711 "$STATE_DIR" "$RUN"  # munged wants its socket reachable by all; nothing here is listable

# A failure from here on stops whatever this run started, so a caller that gives up leaks nothing.
cleanup_on_failure() {
    if [[ ${BENCH_SLURM_KEEP_ON_FAILURE:-0} != 1 ]]; then
        log "stopping the partly started cluster (logs kept in $LOGS)"
        exec 9>&-  # slurm-down.sh takes the same lock
        "$HERE/slurm-down.sh" >&2 || true
    fi
}
trap 'status=$?; (( status == 1 )) && cleanup_on_failure; exit $status' EXIT

# ---- packages, under the lock ---------------------------------------------------------------------
BINARIES=(slurmctld slurmd slurmdbd sbatch sacct sacctmgr scontrol sinfo squeue munged munge unmunge
          mariadbd mariadb-install-db mariadb mariadb-admin)
missing() { for bin in "${BINARIES[@]}"; do command -v "$bin" >/dev/null 2>&1 || echo "$bin"; done; }
if [[ -n $(missing) ]]; then
    command -v apt-get >/dev/null 2>&1 || skip "missing $(missing | xargs) and apt-get is not available to install them"
    log "installing Debian's slurm, munge and mariadb packages (log: $LOGS/apt.log)"
    # Package scripts would start the system's own daemons (invoke-rc.d); policy-rc.d says no
    # (exit 101). Ours exists only while apt runs: it goes when this script ends, however it ends.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        remove_on_exit "$policy"
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        ours=1
    fi
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
               slurmctld slurmd slurm-client munge slurmdbd mariadb-server; } >"$LOGS/apt.log" 2>&1; then
        tail -n 15 "$LOGS/apt.log" >&2
        skip "apt-get install of slurm/munge/mariadb failed (see $LOGS/apt.log)"
    fi
    if [[ -n ${ours:-} ]]; then rm -f "$policy"; fi
    [[ -z $(missing) ]] || skip "$(missing | xargs) still missing after apt-get install"
fi

# ---- helpers ----------------------------------------------------------------------------------
DEADLINE=$((SECONDS + TIMEOUT))
show_logs() { for f in "$@"; do [[ -s $f ]] && { echo "----- tail $f -----"; tail -n 25 "$f"; } >&2; done; return 0; }
# wait_for WHAT DAEMON -- CMD...: poll CMD until it succeeds; fail with DAEMON's logs if it dies or time runs out.
wait_for() {
    local what=$1 daemon=$2; shift 3
    until "$@" >/dev/null 2>&1; do
        if [[ -n $daemon ]] && ! running "$daemon"; then
            show_logs "$LOGS/$daemon.out" "$LOGS/$daemon.log"; fail "$daemon exited while waiting for $what"
        fi
        (( SECONDS < DEADLINE )) || { show_logs "$LOGS"/*.log; fail "timed out after ${TIMEOUT}s waiting for $what"; }
        sleep 0.2
    done
}
port_free() { ! command -v ss >/dev/null 2>&1 || [[ -z $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }
start() {  # start NAME PORT ARGS...: unless it runs already; the port must be free for it
    local name=$1 port=$2; shift 2
    if running "$name"; then log "$name already running"; return 0; fi
    [[ -z $port ]] || port_free "$port" ||
        fail "port $port (for $name) is taken by another process; set BENCH_SLURM_PORT_BASE to move this cluster"
    start_daemon "$name" "$@"
    STARTED=1
}
# render TEMPLATE OUT: the template with @VAR@ filled in from this script's variables.
render() {
    local text var
    text=$(<"$1")
    for var in STATE_DIR RUN LOGS HOST CTLD_PORT SLURMD_PORT DBD_PORT NODE_LINE; do
        text=${text//@$var@/${!var}}
    done
    if [[ -f $2 ]] && [[ $(<"$2") == "$text" ]]; then return 0; fi
    running slurmctld && log "WARNING: $2 changes but the cluster is running; run slurm-down.sh to apply it"
    printf '%s\n' "$text" >"$2.tmp" && chmod 600 "$2.tmp" && mv -f "$2.tmp" "$2"
}
STARTED=0
HOST=$(hostname -s)

# ---- munge: its own key and socket, never the system's ----------------------------------------
[[ -s $STATE_DIR/munge/munge.key ]] || dd if=/dev/urandom of="$STATE_DIR/munge/munge.key" bs=1024 count=1 status=none
chmod 0600 "$STATE_DIR/munge/munge.key"
running munged || rm -f "$RUN/munge.socket" "$RUN/munge.socket.lock"  # a killed munged's socket blocks a new one
start munged "" --foreground --socket="$RUN/munge.socket" --key-file="$STATE_DIR/munge/munge.key" \
    --seed-file="$STATE_DIR/munge/munged.seed" --pid-file="$RUN/munged.pid" --log-file="$LOGS/munged.log"
wait_for "the munge socket" munged -- bash -c "munge -n -S '$RUN/munge.socket' | unmunge -S '$RUN/munge.socket'"

# ---- MariaDB for slurmdbd: private datadir, socket and loopback port; root by socket, no password
if [[ ! -d $STATE_DIR/mysql/mysql ]]; then
    log "initialising the MariaDB datadir"
    mariadb-install-db --no-defaults --datadir="$STATE_DIR/mysql" --user=root --auth-root-authentication-method=socket \
        --skip-test-db >"$LOGS/mariadb-install-db.log" 2>&1 || { show_logs "$LOGS/mariadb-install-db.log"; fail "mariadb-install-db failed"; }
fi
running mariadbd || rm -f "$RUN/mysqld.sock"
# innodb_lock_wait_timeout=900 is what slurmdbd asks for; no fsync per commit for a throwaway DB.
start mariadbd "$MYSQL_PORT" --no-defaults --user=root --datadir="$STATE_DIR/mysql" --socket="$RUN/mysqld.sock" \
    --bind-address=127.0.0.1 --port="$MYSQL_PORT" --skip-name-resolve --pid-file="$RUN/mariadbd.pid" \
    --log-error="$LOGS/mariadbd.log" --innodb-buffer-pool-size=128M --innodb-log-file-size=64M \
    --innodb-lock-wait-timeout=900 --innodb-flush-log-at-trx-commit=2
wait_for "mariadbd" mariadbd -- mariadb-admin --no-defaults --socket="$RUN/mysqld.sock" -uroot ping

# ---- configs from the templates ---------------------------------------------------------------
NODE_LINE=$(slurmd -C | head -n 1)  # the hardware slurmd itself detects, so the node matches
[[ $NODE_LINE == NodeName=* ]] || fail "unexpected 'slurmd -C' output: $NODE_LINE"
NODE_NAME=${NODE_LINE%% *} NODE_NAME=${NODE_NAME#NodeName=}
render "$HERE/slurm/slurmdbd.conf.in" "$STATE_DIR/slurmdbd.conf"
render "$HERE/slurm/slurm.conf.in" "$STATE_DIR/slurm.conf"
chmod 644 "$STATE_DIR/slurm.conf"

# ---- slurmdbd, and the cluster registered before slurmctld starts (or it records no jobs) -----
start slurmdbd "$DBD_PORT" -D
wait_for "slurmdbd" slurmdbd -- timeout 10 sacctmgr -n -P list cluster format=Cluster
if ! timeout 10 sacctmgr -n -P list cluster format=Cluster | grep -qx bench; then
    timeout 20 sacctmgr -i add cluster bench >&2 || fail "sacctmgr add cluster bench failed"
fi

# ---- slurmctld + slurmd -------------------------------------------------------------------------
start slurmctld "$CTLD_PORT" -D -i  # -i: ignore unreadable state files (after a kill -9)
wait_for "slurmctld (scontrol ping)" slurmctld -- bash -c 'timeout 5 scontrol ping | grep -q "is UP"'
start slurmd "$SLURMD_PORT" -D
node_usable() {
    case $(timeout 5 sinfo -h -N -n "$NODE_NAME" -o %T 2>/dev/null | head -n 1) in
        idle|mixed|allocated|completing) return 0 ;;
        down*|drain*|fail*) timeout 5 scontrol update NodeName="$NODE_NAME" State=RESUME >/dev/null 2>&1; return 1 ;;
        *) return 1 ;;
    esac
}
wait_for "node $NODE_NAME to be usable" slurmd -- node_usable

# ---- after a (re)start: a batch job runs and sacct reports it -----------------------------------
if (( STARTED )); then
    jobid=$(timeout 20 sbatch --parsable -J slurm-up-smoke -o /dev/null -e /dev/null --chdir="$STATE_DIR" --wrap true) ||
        fail "sbatch of the smoke-test job failed"
    smoke_done() { [[ $(timeout 5 sacct -n -X -P -j "${jobid%%;*}" -o State 2>/dev/null | head -n 1) == COMPLETED ]]; }
    wait_for "the smoke-test job to be COMPLETED in sacct" "" -- smoke_done
fi
log "cluster 'bench' is up (node $NODE_NAME; state in $STATE_DIR)"
echo "export SLURM_CONF=$SLURM_CONF"
