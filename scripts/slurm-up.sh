#!/usr/bin/env bash
# slurm-up.sh - bring up a real single-node SLURM cluster (with accounting) for tests.
#
# Usage:   eval "$(scripts/slurm-up.sh)"      # exports SLURM_CONF for this shell
#
# Everything (configs, spool, logs, pid files, MariaDB datadir, munge key and
# socket) lives under ${BENCH_SLURM_DIR:-/tmp/bench-slurm}, so the cluster never
# touches /etc/slurm, /etc/munge or /run and can be thrown away with
# `scripts/slurm-down.sh --purge`.
#
# The only line printed on stdout is `export SLURM_CONF=<dir>/slurm.conf`;
# progress and errors go to stderr.
#
# Exit codes: 0 cluster up; 1 something failed (logs are tailed on stderr);
#             2 cannot run here (not root / packages unavailable): callers skip.
#
# Environment knobs:
#   BENCH_SLURM_DIR        state directory             (default /tmp/bench-slurm)
#   BENCH_SLURM_PORT_BASE  slurmctld port; slurmd, slurmdbd and MariaDB use the
#                          next three ports            (default 6817)
#   BENCH_SLURM_TIMEOUT    seconds to wait for the cluster to come up (default 60)
#   BENCH_SLURM_KEEP_ON_FAILURE=1  don't stop the daemons when bring-up fails
#                          (by default a failed run calls slurm-down.sh, so a
#                          caller that just skips its tests leaks nothing)
#
# Daemons run as root in the foreground of their own session (setsid), so their
# PIDs are known exactly; scripts/slurm-down.sh stops them by those PIDs only.
set -euo pipefail

STATE_DIR=${BENCH_SLURM_DIR:-/tmp/bench-slurm}
PORT_BASE=${BENCH_SLURM_PORT_BASE:-6817}
TIMEOUT=${BENCH_SLURM_TIMEOUT:-60}

CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
MYSQL_PORT=$((PORT_BASE + 3))
CLUSTER=bench

log()  { echo "slurm-up: $*" >&2; }
skip() { echo "slurm-up: cannot run: $*" >&2; exit 2; }
CLEANUP_ON_FAILURE=0   # set once we hold the lock and may start daemons
die() {
    echo "slurm-up: ERROR: $*" >&2
    if (( CLEANUP_ON_FAILURE )) && [[ ${BENCH_SLURM_KEEP_ON_FAILURE:-0} != 1 ]]; then
        echo "slurm-up: stopping the partly started cluster (logs kept in $STATE_DIR/log;" \
             "set BENCH_SLURM_KEEP_ON_FAILURE=1 to keep it running)" >&2
        exec 9>&-   # release our lock: slurm-down.sh takes the same one
        "$(dirname "${BASH_SOURCE[0]}")/slurm-down.sh" >&2 || true
    fi
    exit 1
}

# ---------------------------------------------------------------------------
# 0. Preconditions: root + packages.
# ---------------------------------------------------------------------------
# Daemons run with SlurmUser=root and must read a root-owned 0600 munge key.
[[ $(id -u) -eq 0 ]] || skip "must run as root (uid is $(id -u))"

case $STATE_DIR in /*) ;; *) die "BENCH_SLURM_DIR must be an absolute path: $STATE_DIR" ;; esac
# A unix socket path is limited to 107 bytes (sun_path); MariaDB's socket is the longest.
(( ${#STATE_DIR} <= 80 )) || skip "BENCH_SLURM_DIR is too long for unix sockets: $STATE_DIR"

# Binaries we need -> the Debian package that provides them.
declare -A PKG_OF=(
    [slurmctld]=slurmctld [slurmd]=slurmd [slurmdbd]=slurmdbd
    [sbatch]=slurm-client [sacct]=slurm-client [sacctmgr]=slurm-client
    [scontrol]=slurm-client [sinfo]=slurm-client [squeue]=slurm-client
    [munged]=munge [munge]=munge [unmunge]=munge
    [mariadbd]=mariadb-server [mariadb-install-db]=mariadb-server
    [mariadb]=mariadb-client [mariadb-admin]=mariadb-client
)
missing=()
for bin in "${!PKG_OF[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
if (( ${#missing[@]} )); then
    command -v apt-get >/dev/null 2>&1 ||
        skip "missing ${missing[*]} and apt-get is not available to install them"
    mkdir -p "$STATE_DIR/log"
    apt_log=$STATE_DIR/log/apt.log
    log "installing slurm/munge/mariadb packages (missing: ${missing[*]}); log: $apt_log"
    # Without systemd, package postinst scripts would try to start the system
    # daemons (mariadb, munge, slurm*) via invoke-rc.d; we want none of them,
    # we start our own copies below. policy-rc.d exit 101 = "don't start".
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"
        own_policy=1
        trap 'rm -f "$policy"' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    # --no-install-recommends: the recommends pull in ~15 unneeded -dev/plugin
    # packages and roughly double the install time.
    if ! { apt-get update -q && apt-get install -y -q --no-install-recommends \
            slurmctld slurmd slurm-client munge slurmdbd mariadb-server; } >"$apt_log" 2>&1; then
        tail -n 15 "$apt_log" >&2
        skip "apt-get install of slurm/munge/mariadb failed (see $apt_log)"
    fi
    if (( own_policy )); then rm -f "$policy"; trap - EXIT; fi
    for bin in "${!PKG_OF[@]}"; do
        command -v "$bin" >/dev/null 2>&1 || skip "$bin still missing after apt-get install"
    done
fi

# ---------------------------------------------------------------------------
# 1. State directory layout. Serialise concurrent callers (e.g. several test
#    workers calling slurm-up.sh at once) with a lock inside the state dir.
# ---------------------------------------------------------------------------
ETC=$STATE_DIR              # slurm.conf + slurmdbd.conf (must share a directory)
RUN=$STATE_DIR/run          # sockets + pid files written by the daemons themselves
PIDS=$STATE_DIR/pids        # pid files written by us: the source of truth for slurm-down.sh
LOGS=$STATE_DIR/log
SPOOL=$STATE_DIR/spool
MUNGE_DIR=$STATE_DIR/munge  # key + PRNG seed; munged insists on 0700, owner = its uid
MYSQL_DATA=$STATE_DIR/mysql

# munged refuses group/world-writable directories on the paths it uses, so
# keep everything 0755 (0700 for secrets). The parent (/tmp) is sticky: fine.
umask 022
mkdir -p "$STATE_DIR"
chmod 0755 "$STATE_DIR"
mkdir -p "$RUN" "$PIDS" "$LOGS" "$SPOOL/slurmctld" "$SPOOL/slurmd"
mkdir -p "$MUNGE_DIR"
chmod 0700 "$MUNGE_DIR"

exec 9>"$STATE_DIR/.lock"
flock -w 180 9 || die "timed out waiting for the lock $STATE_DIR/.lock (another slurm-up/down running?)"
CLEANUP_ON_FAILURE=1

export SLURM_CONF=$ETC/slurm.conf
MUNGE_SOCKET=$RUN/munge.socket
MYSQL_SOCKET=$RUN/mysqld.sock
HOST=$(hostname -s)

# ---------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------
# pid_alive NAME: true if $PIDS/NAME.pid names a live process whose command is
# NAME (guards against a recycled PID belonging to something else).
pid_alive() {
    local name=$1 pid comm
    [[ -s $PIDS/$name.pid ]] || return 1
    pid=$(<"$PIDS/$name.pid")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$name" ]]
}

# start_daemon NAME CMD...: run CMD in a new session, detached from our
# stdin/stdout/stderr (so `$(slurm-up.sh)` and subprocess pipes don't hang on
# the daemon), output appended to log/NAME.out. fd 9 (our lock) is closed too:
# a daemon inheriting it would hold the lock for its whole life. The wrapper
# shell writes its own PID then execs the daemon, so the recorded PID is the
# daemon's PID.
start_daemon() {
    local name=$1; shift
    rm -f "$PIDS/$name.pid"
    # shellcheck disable=SC2016  # $$/$1/$@ are for the inner shell
    setsid -f bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PIDS/$name.pid" "$@" \
        </dev/null >>"$LOGS/$name.out" 2>&1 9>&-
    local n
    for ((n = 0; n < 50; n++)); do [[ -s $PIDS/$name.pid ]] && return 0; sleep 0.1; done
    die "$name did not start (no pid file)"
}

# show_logs FILE...: tail the given logs on stderr (for failure messages).
show_logs() {
    local f
    for f in "$@"; do
        [[ -s $f ]] || continue
        echo "----- tail $f -----" >&2
        tail -n 25 "$f" >&2
    done
}

# wait_for WHAT DAEMON LOG... -- CMD...: poll CMD until it succeeds; fail
# (tailing the LOGs) if DAEMON (may be "") dies or the overall $TIMEOUT elapses.
DEADLINE=$((SECONDS + TIMEOUT))
wait_for() {
    local what=$1 daemon=$2; shift 2
    local -a logs=()
    while [[ $1 != -- ]]; do logs+=("$1"); shift; done; shift
    until "$@" >/dev/null 2>&1; do
        if [[ -n $daemon ]] && ! pid_alive "$daemon"; then
            show_logs "${logs[@]}"
            die "$daemon exited while waiting for $what"
        fi
        if (( SECONDS >= DEADLINE )); then
            show_logs "${logs[@]}"
            die "timed out after ${TIMEOUT}s waiting for $what"
        fi
        sleep 0.2
    done
}

# port_free PORT: true if nothing listens on PORT (best effort: needs `ss`).
port_free() {
    command -v ss >/dev/null 2>&1 || return 0
    [[ -z $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
}
need_port() {
    port_free "$1" ||
        die "port $1 (for $2) is already in use by another process; set BENCH_SLURM_PORT_BASE to move this cluster"
}

# write_if_changed FILE MODE: install stdin as FILE unless identical content
# exists. If FILE differs while slurm daemons are running, keep the old one and
# warn: the running daemons would not pick the change up anyway.
any_slurm_alive() { pid_alive slurmctld || pid_alive slurmd || pid_alive slurmdbd; }
write_if_changed() {
    local file=$1 mode=$2 tmp
    tmp=$(mktemp "$file.XXXXXX")
    cat >"$tmp"; chmod "$mode" "$tmp"
    if [[ -f $file ]] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; return 0; fi
    if [[ -f $file ]] && any_slurm_alive; then
        rm -f "$tmp"
        log "WARNING: $file would change but the cluster is running; keeping the old one (run slurm-down.sh first to apply)"
        return 0
    fi
    mv -f "$tmp" "$file"
}

started_something=0

# Fail before starting anything if a port we need is taken by someone else
# (e.g. another cluster on this machine): daemons would just die on bind().
pid_alive mariadbd  || need_port "$MYSQL_PORT" mariadbd
pid_alive slurmdbd  || need_port "$DBD_PORT" slurmdbd
pid_alive slurmctld || need_port "$CTLD_PORT" slurmctld
pid_alive slurmd    || need_port "$SLURMD_PORT" slurmd

# ---------------------------------------------------------------------------
# 2. munge: its own key and socket, so it never clashes with a system munged.
# ---------------------------------------------------------------------------
if [[ ! -s $MUNGE_DIR/munge.key ]]; then
    # munged requires the key to be 0600 and owned by the uid it runs as.
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile="$MUNGE_DIR/munge.key" 2>>"$LOGS/munged.out"
    else
        dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
    fi
fi
chown root:root "$MUNGE_DIR/munge.key"
chmod 0600 "$MUNGE_DIR/munge.key"

munge_ok() { munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET"; }
if pid_alive munged; then
    log "munged already running (pid $(<"$PIDS/munged.pid"))"
else
    # A stale socket from a killed munged makes the new one refuse to start.
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    start_daemon munged munged --foreground \
        --socket="$MUNGE_SOCKET" --key-file="$MUNGE_DIR/munge.key" \
        --seed-file="$MUNGE_DIR/munged.seed" --pid-file="$RUN/munged.pid" \
        --log-file="$LOGS/munged.log"
    started_something=1
fi
wait_for "munge socket" munged "$LOGS/munged.out" "$LOGS/munged.log" -- munge_ok

# ---------------------------------------------------------------------------
# 3. MariaDB for slurmdbd: private datadir, socket and 127.0.0.1 port.
# ---------------------------------------------------------------------------
if [[ ! -d $MYSQL_DATA/mysql ]]; then
    log "initialising MariaDB datadir $MYSQL_DATA"
    rm -rf "$MYSQL_DATA"
    # --no-defaults: ignore /etc/mysql/*.cnf (system paths, socket, port).
    # root@localhost authenticates via unix_socket, i.e. OS root, no password.
    mariadb-install-db --no-defaults --datadir="$MYSQL_DATA" --user=root \
        --auth-root-authentication-method=socket --skip-test-db \
        >"$LOGS/mariadb-install-db.log" 2>&1 ||
        { show_logs "$LOGS/mariadb-install-db.log"; die "mariadb-install-db failed"; }
fi
if pid_alive mariadbd; then
    log "mariadbd already running (pid $(<"$PIDS/mariadbd.pid"))"
else
    rm -f "$MYSQL_SOCKET"
    # --user=root: mariadbd refuses to run as root unless told so explicitly.
    # innodb_lock_wait_timeout=900 is what slurmdbd asks for (it warns otherwise);
    # flush_log_at_trx_commit=2: no fsync per commit, a throwaway DB doesn't need it
    # and it makes slurmdbd's first-start schema creation much faster.
    start_daemon mariadbd mariadbd --no-defaults --user=root \
        --datadir="$MYSQL_DATA" --socket="$MYSQL_SOCKET" \
        --bind-address=127.0.0.1 --port="$MYSQL_PORT" --skip-name-resolve \
        --pid-file="$RUN/mariadbd.pid" --log-error="$LOGS/mariadbd.log" \
        --innodb-buffer-pool-size=128M --innodb-log-file-size=64M \
        --innodb-lock-wait-timeout=900 --innodb-flush-log-at-trx-commit=2
    started_something=1
fi
wait_for "mariadbd" mariadbd "$LOGS/mariadbd.log" "$LOGS/mariadbd.out" -- \
    mariadb-admin --no-defaults --socket="$MYSQL_SOCKET" -uroot ping

# The slurmdbd DB password is generated once and kept (0600) in the state dir.
if [[ ! -s $STATE_DIR/dbpass ]]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$STATE_DIR/dbpass")
fi
DBPASS=$(<"$STATE_DIR/dbpass")
# Idempotent: safe on every run; ALTER keeps the password in sync with dbpass.
mariadb --no-defaults --socket="$MYSQL_SOCKET" -uroot <<SQL || die "could not create the slurm_acct_db database/user in MariaDB"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DBPASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DBPASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL

# ---------------------------------------------------------------------------
# 4. Configs. slurmdbd.conf must sit next to slurm.conf (SLURM_CONF's dir).
# ---------------------------------------------------------------------------
# The node line comes from the hardware slurmd itself detects, so it matches.
NODE_LINE=$(slurmd -C | head -n 1)
[[ $NODE_LINE == NodeName=* ]] || die "unexpected 'slurmd -C' output: $NODE_LINE"
NODE_NAME=${NODE_LINE%% *}; NODE_NAME=${NODE_NAME#NodeName=}

write_if_changed "$ETC/slurmdbd.conf" 600 <<EOF
# Generated by scripts/slurm-up.sh - slurmdbd requires mode 600, owner SlurmUser.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$LOGS/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
EOF

write_if_changed "$ETC/slurm.conf" 644 <<EOF
# Generated by scripts/slurm-up.sh - single-node test cluster, state in $STATE_DIR
ClusterName=$CLUSTER
# name(address): don't depend on how the hostname resolves.
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root

# Authentication: our private munged (see AuthInfo); AccountingStoragePass is
# the munge socket used for slurmctld/clients <-> slurmdbd traffic.
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET

StateSaveLocation=$SPOOL/slurmctld
SlurmdSpoolDir=$SPOOL/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups in a container without systemd: plain /proc process tracking.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
# Don't try to copy the submitter's ulimits onto the job (fails in containers).
PropagateResourceLimits=NONE
MailProg=/bin/true

SchedulerType=sched/backfill
# batch_sched_delay defaults to 3 s: every sbatch would wait ~3 s to start.
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU

# Short timeouts so the cluster reacts quickly in tests.
SlurmctldTimeout=10
SlurmdTimeout=30
MessageTimeout=10
InactiveLimit=0
KillWait=5
MinJobAge=2
Waittime=0
ReturnToService=2
# Trust the node definition below even if slurmd reports slightly less (never DRAIN it).
SlurmdParameters=config_overrides

# Accounting is mandatory: submitit learns job states (e.g. CANCELLED) from sacct.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none

# No GresTypes: --gres=gpu / --gpus requests are rejected at submit time.
$NODE_LINE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

# ---------------------------------------------------------------------------
# 5. slurmdbd, then register the cluster (must exist before slurmctld starts,
#    otherwise slurmctld runs without recording jobs).
# ---------------------------------------------------------------------------
if pid_alive slurmdbd; then
    log "slurmdbd already running (pid $(<"$PIDS/slurmdbd.pid"))"
else
    start_daemon slurmdbd slurmdbd -D
    started_something=1
fi
wait_for "slurmdbd" slurmdbd "$LOGS/slurmdbd.log" "$LOGS/slurmdbd.out" -- \
    timeout 10 sacctmgr -n -P list cluster format=Cluster

if ! timeout 10 sacctmgr -n -P list cluster format=Cluster | grep -qx "$CLUSTER"; then
    # Adding the cluster also creates the 'root' account + root user association,
    # which is all jobs need (AccountingStorageEnforce is not set).
    timeout 20 sacctmgr -i add cluster "$CLUSTER" >&2 || die "sacctmgr add cluster $CLUSTER failed"
fi

# ---------------------------------------------------------------------------
# 6. slurmctld + slurmd.
# ---------------------------------------------------------------------------
if pid_alive slurmctld; then
    log "slurmctld already running (pid $(<"$PIDS/slurmctld.pid"))"
else
    # -i: ignore unreadable state files (e.g. after a kill -9) instead of exiting.
    start_daemon slurmctld slurmctld -D -i
    started_something=1
fi
wait_for "slurmctld (scontrol ping)" slurmctld "$LOGS/slurmctld.log" "$LOGS/slurmctld.out" -- \
    bash -c 'timeout 5 scontrol ping | grep -q "is UP"'

if pid_alive slurmd; then
    log "slurmd already running (pid $(<"$PIDS/slurmd.pid"))"
else
    start_daemon slurmd slurmd -D
    started_something=1
fi

node_state() { timeout 5 sinfo -h -N -n "$NODE_NAME" -o %T 2>/dev/null | head -n 1; }
node_usable() {
    local s; s=$(node_state)
    case $s in
        idle|mixed|allocated|completing) return 0 ;;
        # e.g. DOWN after the node was killed without warning: put it back.
        down*|drain*|fail*)
            timeout 5 scontrol update NodeName="$NODE_NAME" State=RESUME >/dev/null 2>&1
            return 1 ;;
        *) return 1 ;;
    esac
}
wait_for "node $NODE_NAME to be idle in sinfo" slurmd "$LOGS/slurmd.log" "$LOGS/slurmd.out" "$LOGS/slurmctld.log" -- \
    node_usable

# ---------------------------------------------------------------------------
# 7. Smoke test after a (re)start: a batch job runs and sacct reports it.
#    Skipped when everything was already up (the node may be busy with jobs).
# ---------------------------------------------------------------------------
if (( started_something )); then
    jobid=$(timeout 20 sbatch --parsable -J slurm-up-smoke -o /dev/null -e /dev/null \
        --chdir="$STATE_DIR" --wrap true) || die "sbatch of the smoke-test job failed"
    jobid=${jobid%%;*}
    smoke_done() {
        [[ $(timeout 5 sacct -n -X -P -j "$jobid" -o State 2>/dev/null | head -n 1) == COMPLETED ]]
    }
    wait_for "smoke-test job $jobid to be COMPLETED in sacct" "" \
        "$LOGS/slurmctld.log" "$LOGS/slurmd.log" "$LOGS/slurmdbd.log" -- smoke_done
fi

log "cluster '$CLUSTER' is up (node $NODE_NAME; state in $STATE_DIR)"
echo "export SLURM_CONF=$SLURM_CONF"
