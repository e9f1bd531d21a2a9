# shellcheck shell=bash
# Shared by postgres-up.sh and postgres-down.sh: where the test server lives, why its state
# directory can be trusted, the lock both take, and the server process (started and stopped by PID
# file with start-stop-daemon, which also checks the executable, so a recycled PID is never signalled).

STATE_DIR=${BENCH_POSTGRES_DIR:-/var/lib/bench-postgres}
TIMEOUT=${BENCH_POSTGRES_TIMEOUT:-60}
MARKER=.bench-postgres-state  # written when the helper creates STATE_DIR; only such a dir is used or purged
DATA=$STATE_DIR/data    # the cluster: the postgres user's, 0700
RUN=$STATE_DIR/run      # its unix socket: the postgres user's, 0700
PIDS=$STATE_DIR/pids    # the pid file start-stop-daemon writes: the source of truth for stopping
LOGS=$STATE_DIR/log
URL_FILE=$STATE_DIR/url # postgresql://bench:<password>@127.0.0.1:<port>/bench, root's only (0600)

log() { echo "$SELF: $*" >&2; }
skip() { log "cannot run here: $*"; exit 2; }
fail() { log "ERROR: $*"; exit 1; }

pg_bin() {  # the newest installed server's bin dir
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n $dir && -x $dir/postgres ]] && echo "$dir"
}

STATE_VAR=BENCH_POSTGRES_DIR HELPER=postgres
# trust_state_dir, take_lock
# shellcheck source=scripts/lib/state_dir.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/../lib/state_dir.sh"

running() {
    local bin
    bin=$(pg_bin) || return 1
    start-stop-daemon --status --pidfile "$PIDS/postgres.pid" --exec "$bin/postgres" >/dev/null 2>&1
}

stop_server() {  # SIGINT (PostgreSQL's fast shutdown), then SIGKILL; only the process the pid file names
    local bin
    bin=$(pg_bin) || return 0
    [[ -f $PIDS/postgres.pid ]] || return 0
    start-stop-daemon --stop --quiet --oknodo --pidfile "$PIDS/postgres.pid" --exec "$bin/postgres" \
        --retry INT/20/KILL/5 --remove-pidfile 9>&- && log "stopped postgres (if it was running)"
}
