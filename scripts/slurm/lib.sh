# shellcheck shell=bash
# Shared by slurm-up.sh and slurm-down.sh: where the test cluster lives, why its state directory
# can be trusted, the lock both take, and its daemons (started and stopped by PID file with
# start-stop-daemon, which also checks the executable, so a recycled PID is never signalled).

STATE_DIR=${BENCH_SLURM_DIR:-/var/lib/bench-slurm}
PORT_BASE=${BENCH_SLURM_PORT_BASE:-6817}
TIMEOUT=${BENCH_SLURM_TIMEOUT:-60}
# Written when the helper creates STATE_DIR. Only a directory that has it is used or purged.
MARKER=.bench-slurm-state
RUN=$STATE_DIR/run      # sockets, and the pid files the daemons write themselves
PIDS=$STATE_DIR/pids    # pid files start-stop-daemon writes: the source of truth for stopping
LOGS=$STATE_DIR/log
CTLD_PORT=$PORT_BASE SLURMD_PORT=$((PORT_BASE + 1)) DBD_PORT=$((PORT_BASE + 2)) MYSQL_PORT=$((PORT_BASE + 3))
export SLURM_CONF=$STATE_DIR/slurm.conf MYSQL_UNIX_PORT=$RUN/mysqld.sock
# Start order; stopped in reverse.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

log() { echo "$SELF: $*" >&2; }
skip() { log "cannot run here: $*"; exit 2; }
fail() { log "ERROR: $*"; exit 1; }

STATE_VAR=BENCH_SLURM_DIR HELPER=slurm
# trust_state_dir, take_lock
# shellcheck source=scripts/lib/state_dir.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/../lib/state_dir.sh"

exe() { command -v "$1" || echo "/usr/sbin/$1"; }

running() {
    start-stop-daemon --status --pidfile "$PIDS/$1.pid" --exec "$(exe "$1")" >/dev/null 2>&1
}

# start_daemon NAME ARGS...: NAME in the foreground of its own session, output to log/NAME.out.
# Returns once the recorded PID runs NAME: start-stop-daemon writes the pid file before its child
# has exec'd, and a check in between would take the daemon for dead.
start_daemon() {
    local name=$1 i; shift
    start-stop-daemon --start --quiet --background --make-pidfile --pidfile "$PIDS/$name.pid" \
        --output "$LOGS/$name.out" --exec "$(exe "$name")" -- "$@" 9>&- || fail "$name did not start"
    for ((i = 0; i < 50; i++)); do running "$name" && return 0; sleep 0.1; done
    fail "$name did not start (see $LOGS/$name.out)"
}

# stop_daemon NAME: SIGTERM, then SIGKILL after 15 s; only the process the pid file names.
stop_daemon() {
    start-stop-daemon --stop --quiet --oknodo --pidfile "$PIDS/$1.pid" --exec "$(exe "$1")" \
        --retry TERM/15/KILL/5 --remove-pidfile 9>&- && log "stopped $1 (if it was running)"
}

# remove_on_exit PATH: PATH is removed when this shell exits, however it exits, SIGKILL included:
# a guard in its own session (so signals to our process group miss it) waits for EOF on a pipe
# that only this shell holds open.
remove_on_exit() {
    exec {REMOVE_ON_EXIT_FD}> >(exec setsid sh -c 'cat >/dev/null; rm -f "$1"' guard "$1")
}
