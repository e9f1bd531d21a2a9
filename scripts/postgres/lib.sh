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

# trust_state_dir [create]: STATE_DIR must be a real directory (not a symlink), owned by root,
# not writable or readable by others (711: the postgres user only traverses it) and marked as made
# by this helper. With `create`, a missing one is made that way. Returns 1 when it does not exist.
trust_state_dir() {
    case $STATE_DIR in /*) ;; *) fail "BENCH_POSTGRES_DIR must be an absolute path: $STATE_DIR" ;; esac
    (( ${#STATE_DIR} <= 80 )) || fail "BENCH_POSTGRES_DIR is too long for unix sockets: $STATE_DIR"
    if [[ ${1:-} == create && ! -e $STATE_DIR && ! -L $STATE_DIR ]]; then
        mkdir -m 0711 -- "$STATE_DIR" || fail "cannot create $STATE_DIR"
        echo "made by scripts/postgres-up.sh; scripts/postgres-down.sh --purge deletes this directory" >"$STATE_DIR/$MARKER"
    fi
    [[ -L $STATE_DIR ]] && fail "$STATE_DIR is a symlink; refusing to use it (whoever made it decides where root writes)"
    [[ -e $STATE_DIR ]] || return 1
    [[ -d $STATE_DIR ]] || fail "$STATE_DIR is not a directory"
    local owner mode
    owner=$(stat -c %u -- "$STATE_DIR") mode=$(stat -c %a -- "$STATE_DIR")
    [[ $owner == 0 ]] || fail "$STATE_DIR belongs to uid $owner, not root; refusing to use it"
    (( (8#$mode & 8#066) == 0 )) || fail "$STATE_DIR has mode $mode; others must not read or write it (711 or 700)"
    [[ -f $STATE_DIR/$MARKER && ! -L $STATE_DIR/$MARKER ]] ||
        fail "$STATE_DIR was not made by this helper (no $MARKER in it); refusing to use or purge it"
}

take_lock() {
    exec 9>"$STATE_DIR/.lock"
    flock -w 300 9 || fail "timed out waiting for $STATE_DIR/.lock (another postgres-up/down is running)"
}

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
