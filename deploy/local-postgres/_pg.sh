# Shared by start.sh and stop.sh: where the server binaries are and whom the server runs as.
# shellcheck shell=bash

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

is_root() { [[ $(id -u) == 0 ]]; }

# Debian keeps the server binaries off PATH, under /usr/lib/postgresql/<major>/bin.
find_pg_bin() {
    if [[ -n ${PG_BIN:-} ]]; then echo "$PG_BIN"; return; fi
    local dir newest=""
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x $dir/initdb ]] && newest=$dir
    done
    if [[ -n $newest ]]; then echo "$newest"; return; fi
    local initdb
    initdb=$(command -v initdb) \
        || die "no PostgreSQL server found: install it (apt-get install -y postgresql) or set PG_BIN to the folder holding initdb and pg_ctl"
    dirname "$(readlink -f "$initdb")"
}

# PostgreSQL refuses to run as root, so root runs it as the `postgres` user.
as_server() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}
