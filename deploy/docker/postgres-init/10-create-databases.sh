#!/bin/sh
# First start of the Postgres volume: one database for Dagster, one for MLflow's backend.
# The postgres image runs this from /docker-entrypoint-initdb.d/ as $POSTGRES_USER.
set -eu

for db in "${DAGSTER_PG_DB:-dagster}" "${MLFLOW_PG_DB:-mlflow}"; do
    exists=$(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$db'")
    if [ -z "$exists" ]; then
        psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
            -c "CREATE DATABASE \"$db\" OWNER \"$POSTGRES_USER\""
    fi
done
