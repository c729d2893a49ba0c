#!/usr/bin/env bash
# `make dev`: the whole platform on loopback, stopped together with Ctrl-C.
#   Dagster webserver http://127.0.0.1:3000 (+ daemon: sensors, queued runs)
#   MLflow            http://127.0.0.1:5000
#   serving           http://127.0.0.1:8000   (FastAPI, /docs)
#   Streamlit app     http://127.0.0.1:8501
# A local S3 server starts too when AWS_ENDPOINT_URL points at loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
STATE=${SKIN_CANCER_STATE:-$PWD/state}
LOGS=$STATE/logs
mkdir -p "$LOGS" "$STATE/mlflow" "${DAGSTER_HOME:=$STATE/dagster}"
cp -n dagster.yaml "$DAGSTER_HOME/dagster.yaml" 2>/dev/null || true
export DAGSTER_HOME SKIN_CANCER_STATE=$STATE

# The instance's storage, created (or migrated) once: the daemon and the webserver started
# together on a fresh instance race to create its schema, and the loser exits.
"$BIN/dagster" instance migrate >"$LOGS/instance-migrate.log" 2>&1 \
  || { echo "dagster instance migrate failed; see $LOGS/instance-migrate.log" >&2; exit 1; }

pids=()
start() {  # start NAME COMMAND...: run in the background, log to $LOGS/NAME.log
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  pids+=($!)
  echo "started $name (pid $!, log $LOGS/$name.log)"
}
stop_all() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop_all EXIT INT TERM

if [[ "${AWS_ENDPOINT_URL:-}" =~ ^https?://(127\.0\.0\.1|localhost)(:([0-9]+))? ]]; then
  start s3 "$BIN/moto_server" -H 127.0.0.1 -p "${BASH_REMATCH[3]:-5001}"
  sleep 2
  "$BIN/python" -c "import boto3, os; boto3.client('s3', endpoint_url=os.environ['AWS_ENDPOINT_URL']).create_bucket(Bucket=os.environ['AWS_BUCKET'])" || true
fi

if [[ -n "${MLFLOW_BACKEND_STORE_URI:-}" ]]; then
  start mlflow env MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "$BIN/mlflow" server --host 127.0.0.1 --port 5000 \
    --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" --artifacts-destination "$STATE/mlflow/artifacts"
  export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-http://127.0.0.1:5000}
elif [[ -z "${MLFLOW_TRACKING_URI:-}" ]]; then
  export MLFLOW_TRACKING_URI="sqlite:///$STATE/mlflow/mlflow.db"
  start mlflow "$BIN/mlflow" ui --host 127.0.0.1 --port 5000 --backend-store-uri "$MLFLOW_TRACKING_URI"
fi

export SERVING_ADMIN_TOKEN=${SERVING_ADMIN_TOKEN:-$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')}
export SERVING_URL=${SERVING_URL:-http://127.0.0.1:8000}
start serving "$BIN/uvicorn" serving.app:app --host 127.0.0.1 --port 8000
start app "$BIN/streamlit" run streamlit_app/app.py --server.address 127.0.0.1 --server.port 8501 --server.headless true
start daemon "$BIN/dagster-daemon" run -w workspace.yaml
start webserver "$BIN/dagster-webserver" -w workspace.yaml -h 127.0.0.1 -p 3000
echo "Dagster http://127.0.0.1:3000  MLflow http://127.0.0.1:5000  serving $SERVING_URL  app http://127.0.0.1:8501"
echo "Ctrl-C stops everything."
wait -n "${pids[@]}" || true
echo "a service exited; see $LOGS" >&2
