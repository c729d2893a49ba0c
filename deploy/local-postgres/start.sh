#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for the Postgres-backed local profile.
#
#   eval "$(deploy/local-postgres/start.sh [STATE_DIR] [PORT])"
#
# Initialises STATE_DIR/data on first use (superuser `dagster`, a random password kept in
# STATE_DIR/password), starts the server on 127.0.0.1:PORT, creates the databases `dagster`
# and `mlflow`, and prints the `export` lines for the Dagster instance
# (deploy/local-postgres/dagster.yaml, copied into STATE_DIR/dagster_home) and for
# `mlflow server` (MLFLOW_BACKEND_STORE_URI). Progress goes to stderr, so stdout is only the
# env. Run again on a started cluster, it only prints the env. Stop with stop.sh STATE_DIR.
#
# PostgreSQL refuses to run as root: as root the server runs as the `postgres` user, which
# must be able to reach STATE_DIR (choose a folder under /tmp when the repo sits below a
# private folder such as /root).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE_DIR=${1:-state/postgres}
PORT=${2:-55432}
PG_USER=dagster

# shellcheck source=deploy/local-postgres/_pg.sh
source "$HERE/_pg.sh"

PG_BIN=$(find_pg_bin)
[[ $PORT =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$PORT'"

mkdir -p "$STATE_DIR"
STATE_DIR=$(cd "$STATE_DIR" && pwd)
DATA=$STATE_DIR/data
SOCKETS=$STATE_DIR/run
LOG=$STATE_DIR/postgres.log
PASSWORD_FILE=$STATE_DIR/password

if is_root; then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to own the server (apt-get install -y postgresql creates it)"
fi

if [[ ! -f $PASSWORD_FILE ]]; then
    (umask 077 && od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$PASSWORD_FILE")
fi
PASSWORD=$(cat "$PASSWORD_FILE")

mkdir -p "$DATA" "$SOCKETS"
if is_root; then
    chown postgres: "$DATA" "$SOCKETS"
    as_server test -w "$DATA" || die "the postgres user cannot write $DATA: a folder above it is closed to other users; use a state folder under /tmp"
fi
chmod 700 "$DATA"

if [[ ! -f $DATA/PG_VERSION ]]; then
    echo "start.sh: initialising $DATA with $PG_BIN/initdb" >&2
    pwfile=$(mktemp "$SOCKETS/pw.XXXXXX")
    printf '%s\n' "$PASSWORD" >"$pwfile"
    if is_root; then chown postgres: "$pwfile"; fi
    as_server "$PG_BIN/initdb" -D "$DATA" -U "$PG_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$STATE_DIR/initdb.log" 2>&1 \
        || { rm -f "$pwfile"; die "initdb failed, see $STATE_DIR/initdb.log"; }
    rm -f "$pwfile"
    # A throwaway cluster: durability is not worth the fsyncs.
    cat >>"$DATA/postgresql.conf" <<'CONF'
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
fi

if as_server "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    running_port=$(sed -n 4p "$DATA/postmaster.pid")
    [[ $running_port == "$PORT" ]] || die "the cluster in $DATA already runs on port $running_port, not $PORT: stop it first (stop.sh $STATE_DIR)"
    echo "start.sh: already running on 127.0.0.1:$PORT" >&2
else
    echo "start.sh: starting PostgreSQL on 127.0.0.1:$PORT (log: $LOG)" >&2
    touch "$LOG"
    if is_root; then chown postgres: "$LOG"; fi
    as_server "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
        -o "-p $PORT -k $SOCKETS" start >&2 \
        || die "PostgreSQL did not start on port $PORT; last log lines: $(tail -n 5 "$LOG")"
fi

psql_admin() {
    PGPASSWORD=$PASSWORD "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U "$PG_USER" -d postgres "$@"
}
for db in dagster mlflow; do
    if [[ -z $(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'") ]]; then
        psql_admin -c "CREATE DATABASE $db OWNER $PG_USER" >&2
    fi
done

DAGSTER_HOME_DIR=$STATE_DIR/dagster_home
mkdir -p "$DAGSTER_HOME_DIR"
cp "$HERE/dagster.yaml" "$DAGSTER_HOME_DIR/dagster.yaml"

cat <<ENV
export DAGSTER_PG_HOST=127.0.0.1
export DAGSTER_PG_PORT=$PORT
export DAGSTER_PG_USER=$PG_USER
export DAGSTER_PG_PASSWORD=$PASSWORD
export DAGSTER_PG_DB=dagster
export DAGSTER_HOME=$DAGSTER_HOME_DIR
export MLFLOW_BACKEND_STORE_URI=postgresql+psycopg2://$PG_USER:$PASSWORD@127.0.0.1:$PORT/mlflow
ENV
