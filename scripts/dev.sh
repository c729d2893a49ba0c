#!/usr/bin/env bash
# `make dev`: the whole platform on loopback, stopped together with Ctrl-C.
#   Dagster webserver http://127.0.0.1:$DAGSTER_PORT (3000; + daemon: sensors, queued runs)
#   MLflow            http://127.0.0.1:$MLFLOW_PORT  (5000)
#   serving           http://127.0.0.1:$SERVING_PORT (8000; FastAPI, /docs)
#   Streamlit app     http://127.0.0.1:$APP_PORT     (8501)
# A local S3 server starts too when AWS_ENDPOINT_URL points at loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
DAGSTER_PORT=${DAGSTER_PORT:-3000} MLFLOW_PORT=${MLFLOW_PORT:-5000} SERVING_PORT=${SERVING_PORT:-8000} APP_PORT=${APP_PORT:-8501}
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
  start mlflow env MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "$BIN/mlflow" server --host 127.0.0.1 --port "$MLFLOW_PORT" \
    --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" --artifacts-destination "$STATE/mlflow/artifacts"
  export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-http://127.0.0.1:$MLFLOW_PORT}
elif [[ -z "${MLFLOW_TRACKING_URI:-}" ]]; then
  export MLFLOW_TRACKING_URI="sqlite:///$STATE/mlflow/mlflow.db"
  start mlflow "$BIN/mlflow" ui --host 127.0.0.1 --port "$MLFLOW_PORT" --backend-store-uri "$MLFLOW_TRACKING_URI"
  export MLFLOW_UI_URL=${MLFLOW_UI_URL:-http://127.0.0.1:$MLFLOW_PORT}  # the Dagster UI's links to runs
fi

export SERVING_ADMIN_TOKEN=${SERVING_ADMIN_TOKEN:-$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')}
export SERVING_URL=${SERVING_URL:-http://127.0.0.1:$SERVING_PORT}
export DAGSTER_UI_URL=${DAGSTER_UI_URL:-http://127.0.0.1:$DAGSTER_PORT}  # the app's links to the monitoring assets
start serving "$BIN/uvicorn" serving.app:app --host 127.0.0.1 --port "$SERVING_PORT"
start app "$BIN/streamlit" run streamlit_app/app.py --server.address 127.0.0.1 --server.port "$APP_PORT" --server.headless true
start daemon "$BIN/dagster-daemon" run -w workspace.yaml
start webserver "$BIN/dagster-webserver" -w workspace.yaml -h 127.0.0.1 -p "$DAGSTER_PORT"
echo "Dagster http://127.0.0.1:$DAGSTER_PORT  MLflow http://127.0.0.1:$MLFLOW_PORT  serving $SERVING_URL  app http://127.0.0.1:$APP_PORT"
echo "Ctrl-C stops everything."
wait -n "${pids[@]}" || true
echo "a service exited; see $LOGS" >&2
