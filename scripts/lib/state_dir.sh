# shellcheck shell=bash
# Shared by scripts/slurm/lib.sh and scripts/postgres/lib.sh: why a helper's state directory can be
# trusted as root, and the lock its up and down scripts take. The sourcing lib sets STATE_DIR,
# STATE_VAR (the variable that moves it, for messages), MARKER, HELPER (slurm, postgres) and fail().

# trust_state_dir [create]: STATE_DIR must be a real directory (not a symlink), owned by root,
# private (others may not read or write it; they may traverse it, to reach a daemon's socket) and
# marked as made by this helper. With `create`, a missing one is made that way. Returns 1 when it
# does not exist.
trust_state_dir() {
    case $STATE_DIR in /*) ;; *) fail "$STATE_VAR must be an absolute path: $STATE_DIR" ;; esac
    (( ${#STATE_DIR} <= 80 )) || fail "$STATE_VAR is too long for unix sockets: $STATE_DIR"
    if [[ ${1:-} == create && ! -e $STATE_DIR && ! -L $STATE_DIR ]]; then
        # mkdir, not mkdir -p: it fails if anything appeared there meanwhile, symlinks included.
        mkdir -m 0711 -- "$STATE_DIR" || fail "cannot create $STATE_DIR"
        echo "made by scripts/$HELPER-up.sh; scripts/$HELPER-down.sh --purge deletes this directory" >"$STATE_DIR/$MARKER"
    fi
    [[ -L $STATE_DIR ]] && fail "$STATE_DIR is a symlink; refusing to use it (whoever made it decides where root writes)"
    [[ -e $STATE_DIR ]] || return 1
    [[ -d $STATE_DIR ]] || fail "$STATE_DIR is not a directory"
    local owner mode
    owner=$(stat -c %u -- "$STATE_DIR") mode=$(stat -c %a -- "$STATE_DIR")
    [[ $owner == 0 ]] || fail "$STATE_DIR belongs to uid $owner, not root; refusing to run root's daemons from it"
    (( (8#$mode & 8#066) == 0 )) || fail "$STATE_DIR has mode $mode; others must not read or write it (711 or 700)"
    [[ -f $STATE_DIR/$MARKER && ! -L $STATE_DIR/$MARKER ]] ||
        fail "$STATE_DIR was not made by this helper (no $MARKER in it); refusing to use or purge it"
}

# take_lock: serialise every up/down on this state dir (held on fd 9 until exit).
take_lock() {
    exec 9>"$STATE_DIR/.lock"
    flock -w 300 9 || fail "timed out waiting for $STATE_DIR/.lock (another $HELPER-up/down is running)"
}
