#!/usr/bin/env bash
# Stop the cluster that start.sh started in STATE_DIR; the data stays until the folder is removed.
#
#   deploy/local-postgres/stop.sh [STATE_DIR]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=deploy/local-postgres/_pg.sh
source "$HERE/_pg.sh"

STATE_DIR=${1:-state/postgres}
DATA=$STATE_DIR/data

if [[ ! -f $DATA/PG_VERSION ]]; then
    echo "stop.sh: no cluster in $DATA, nothing to stop" >&2
    exit 0
fi
PG_BIN=$(find_pg_bin)
if as_server "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_server "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >&2
else
    echo "stop.sh: the cluster in $DATA is not running" >&2
fi
