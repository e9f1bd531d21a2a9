#!/usr/bin/env bash
# postgres-up.sh - bring up a real PostgreSQL server on loopback for tests and benchmarks.
#
# Usage:   eval "$(scripts/postgres-up.sh)"   # exports BENCH_POSTGRES_URL_FILE for this shell
#
# Debian's postgresql package is installed on first use (as root, with apt). The cluster, its
# socket, logs and pid file live in one root-owned, private state directory,
# ${BENCH_POSTGRES_DIR:-/var/lib/bench-postgres}, which this script makes and marks; it refuses one
# it did not make, a symlink, or one others can write to. The server runs as the `postgres` user
# from a 0700 data dir, listens on 127.0.0.1 only (a free port, kept across restarts), and has a
# login role `bench` (CREATEDB: tests make a database each) with a random password and a
# database `bench`. The URL, password included,
# is written to <dir>/url (0600), never printed: the only line on stdout is
# `export BENCH_POSTGRES_URL_FILE=<dir>/url`; progress goes to stderr.
#
# Exit codes: 0 server up; 1 something failed; 2 cannot run here (not root, packages not
# installable): callers may skip only then.
set -euo pipefail
SELF=postgres-up
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=postgres/lib.sh
source "$HERE/postgres/lib.sh"

[[ $(id -u) -eq 0 ]] || skip "must run as root (uid is $(id -u))"
command -v start-stop-daemon >/dev/null || skip "start-stop-daemon (Debian's dpkg) is not available"
trust_state_dir create
take_lock
umask 077
mkdir -p "$PIDS" "$LOGS"

# ---- the package, under the lock --------------------------------------------------------------
if ! pg_bin >/dev/null || ! id postgres >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || skip "PostgreSQL is missing and apt-get is not available to install it"
    log "installing Debian's postgresql package (log: $LOGS/apt.log)"
    # The package's scripts would start the system's own cluster (invoke-rc.d); policy-rc.d says no
    # (exit 101) while apt runs. That cluster is never started or used: ours is in STATE_DIR.
    policy=/usr/sbin/policy-rc.d ours=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1
    fi
    status=0
    { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; } \
        >"$LOGS/apt.log" 2>&1 || status=$?
    [[ -n $ours ]] && rm -f "$policy"
    if (( status )); then tail -n 15 "$LOGS/apt.log" >&2; skip "apt-get install postgresql failed (see $LOGS/apt.log)"; fi
    pg_bin >/dev/null || skip "no /usr/lib/postgresql/*/bin/postgres after apt-get install"
fi
BIN=$(pg_bin)
as_postgres() { runuser -u postgres -- "$@"; }

# ---- the cluster: private data dir and socket dir, the postgres user's --------------------------
mkdir -p "$DATA" "$RUN"
chown postgres: "$DATA" "$RUN"
chmod 0700 "$DATA" "$RUN"
if [[ ! -s $DATA/PG_VERSION ]]; then
    log "initialising the cluster in $DATA"
    as_postgres "$BIN/initdb" -D "$DATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
        --encoding=UTF8 --no-instructions >"$LOGS/initdb.log" 2>&1 || { tail -n 20 "$LOGS/initdb.log" >&2; fail "initdb failed"; }
fi
if [[ ! -s $STATE_DIR/port ]]; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' >"$STATE_DIR/port"
fi
PORT=$(<"$STATE_DIR/port")

if ! running; then
    rm -f "$DATA/postmaster.pid"  # a killed server's; start-stop-daemon's own pid file is the truth
    start-stop-daemon --start --quiet --background --make-pidfile --pidfile "$PIDS/postgres.pid" \
        --chuid postgres --output "$LOGS/postgres.log" --exec "$BIN/postgres" -- \
        -D "$DATA" -c listen_addresses=127.0.0.1 -p "$PORT" -c unix_socket_directories="$RUN" \
        -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off 9>&- ||
        fail "postgres did not start"
    # start-stop-daemon writes the pid file before its child has exec'd postgres: wait for the exec.
    for ((i = 0; i < 50; i++)); do running && break; sleep 0.1; done
fi
DEADLINE=$((SECONDS + TIMEOUT))
until "$BIN/pg_isready" -q -h "$RUN" -p "$PORT"; do
    running || { tail -n 20 "$LOGS/postgres.log" >&2; fail "postgres exited while starting (log: $LOGS/postgres.log)"; }
    (( SECONDS < DEADLINE )) || { tail -n 20 "$LOGS/postgres.log" >&2; fail "postgres did not answer within ${TIMEOUT}s"; }
    sleep 0.2
done

# ---- the role and database; the password only in the 0600 URL file and over stdin ---------------
if [[ ! -s $URL_FILE ]]; then
    PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
    printf "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bench') THEN CREATE ROLE bench LOGIN CREATEDB; END IF; END\$\$;\nALTER ROLE bench PASSWORD '%s';\n" "$PASSWORD" |
        as_postgres "$BIN/psql" -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$PORT" -d postgres >/dev/null ||
        fail "could not create the role bench"
    (umask 077; echo "postgresql://bench:$PASSWORD@127.0.0.1:$PORT/bench" >"$URL_FILE.tmp") && mv -f "$URL_FILE.tmp" "$URL_FILE"
fi
if ! as_postgres "$BIN/psql" -qtA -h "$RUN" -p "$PORT" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'bench'" | grep -q 1; then
    as_postgres "$BIN/psql" -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$PORT" -d postgres -c "CREATE DATABASE bench OWNER bench" >/dev/null ||
        fail "could not create the database bench"
fi
log "postgres $(basename "$(dirname "$BIN")") up on 127.0.0.1:$PORT (pid $(<"$PIDS/postgres.pid"), data $DATA)"
echo "export BENCH_POSTGRES_URL_FILE=$URL_FILE"
