# Skin-cancer platform: every entry point. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON_VERSION := 3.11
VENV := .venv
BIN := $(VENV)/bin
STATE ?= $(CURDIR)/state
DAGSTER_HOME ?= $(STATE)/dagster
export TF_CPP_MIN_LOG_LEVEL ?= 2
SERVING_PORT ?= 8000
APP_PORT ?= 8501
DAGSTER_PORT ?= 3000
MLFLOW_PORT ?= 5000

# The local state of the embedded defaults; the test suites make their own in temporary folders.
run smoke dev dev-postgres: export SKIN_CANCER_STATE := $(STATE)
run smoke dev dev-postgres: export DAGSTER_HOME := $(DAGSTER_HOME)
dev dev-postgres: export DAGSTER_PORT MLFLOW_PORT SERVING_PORT APP_PORT

.DEFAULT_GOAL := help
.PHONY: help install run smoke test test-fast dev serve app upload-data dev-postgres postgres-down \
	bench bench-preprocess bench-io bench-serving bench-redeploy bench-quality bench-recipes bench-ensembles lint-docker compose-up compose-down compose-test clean

help:  ## This list.
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 20

install: $(BIN)/dagster  ## Python environment from the lock file (uv).
$(BIN)/dagster: pyproject.toml uv.lock
	@command -v uv >/dev/null || python3 -m pip install --quiet uv
	uv sync --frozen --python $(PYTHON_VERSION)
	@touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $@

run: install $(DAGSTER_HOME)/dagster.yaml  ## Train and elect (job train_and_elect) on the full data set, local defaults; prints the champion.
	$(BIN)/python -m skin_cancer_assets.cli

smoke: install $(DAGSTER_HOME)/dagster.yaml  ## The same job on a small real subset in a few minutes.
	SKIN_CANCER_PROFILE=smoke $(BIN)/python -m skin_cancer_assets.cli

test: install  ## Every test suite in one run (starts its own MLflow, Postgres, serving, Dagster, browser and an S3 stand-in, moto_server).
	scripts/install-test-deps.sh
	$(BIN)/pytest -ra tests

test-fast: install  ## Everything but the tests marked slow.
	scripts/install-test-deps.sh
	$(BIN)/pytest -ra -m "not slow" tests

dev: install $(DAGSTER_HOME)/dagster.yaml  ## Dagster webserver + daemon, MLflow UI, serving and the app on loopback.
	scripts/dev.sh

# Serving alone reads the same MLflow store as `make run` unless MLFLOW_TRACKING_URI names another
# (skin_cancer_assets/environment.py: local_tracking_uri).
serve: export MLFLOW_TRACKING_URI ?= sqlite:///$(STATE)/mlflow/mlflow.db
serve: install  ## Serving alone: the champion of `make run`'s MLflow store (or MODEL_URI from MLFLOW_TRACKING_URI).
	$(BIN)/uvicorn serving.app:app --host 127.0.0.1 --port $(SERVING_PORT)

app: install  ## The Streamlit app alone (SERVING_URL).
	$(BIN)/streamlit run streamlit_app/app.py --server.address 127.0.0.1 --server.port $(APP_PORT) --server.headless true

upload-data: install  ## Copy the local data set to s3://AWS_BUCKET/data (seed layout).
	$(BIN)/python -m skin_cancer_assets.upload_data s3://$(AWS_BUCKET)/data

PG_STATE ?= /tmp/skin-cancer-pg
PG_PORT ?= 55432
dev-postgres: install  ## `make dev` on a local PostgreSQL: Dagster storage and the MLflow backend.
	eval "$$(deploy/local-postgres/start.sh $(PG_STATE) $(PG_PORT))" && \
	MLFLOW_BACKEND_STORE_URI="$$MLFLOW_BACKEND_STORE_URI" scripts/dev.sh

postgres-down:  ## Stop the PostgreSQL of `make dev-postgres` (its data stays in PG_STATE).
	deploy/local-postgres/stop.sh $(PG_STATE)

bench: bench-preprocess bench-io bench-serving  ## The benchmarks that take minutes (bench-quality takes 12 to 24).
bench-preprocess: install  ## Preprocessing of every image against the seed's PIL loop: speed, peak memory.
	$(BIN)/python bench/preprocess.py
bench-io: install  ## The IO manager against raw boto3 and dagster-aws on the real train_images (local moto_server).
	$(BIN)/python bench/io_manager.py
bench-serving: install  ## Serving against in-process prediction and `mlflow models serve`, 1 to 32 clients.
	$(BIN)/python bench/serving.py
bench-redeploy: install  ## A champion's way to serving under 8 posting clients, phase by phase (a few minutes; prints its wall time).
	$(BIN)/python bench/redeploy.py
bench-quality: install  ## The default graph on the full data against the quality targets (12 to 24 min in the last runs).
	$(BIN)/python bench/quality.py
bench-recipes: install  ## basic_cnn's recipe table in docs/results.md: augmentation, a constant learning rate (about 20 min).
	$(BIN)/python bench/recipes.py --model basic_cnn --recipes augment,augment_no_cosine_decay,zoo
bench-ensembles: install  ## What combining trained zoo models gains over the best one, by log-odds or probabilities (about 12 min).
	$(BIN)/python bench/ensembles.py

lint-docker: install  ## hadolint on every Dockerfile.
	$(BIN)/hadolint deploy/docker/Dockerfile.code deploy/docker/Dockerfile.dagster serving/Dockerfile streamlit_app/Dockerfile

compose-up:  ## The Docker Compose stack, built and started in the background (deploy/README.md).
	docker compose -f deploy/docker/docker-compose.yaml up --build -d
compose-down:  ## Stop and remove the Compose stack's containers (its volumes stay).
	docker compose -f deploy/docker/docker-compose.yaml down

compose-test: install  ## The Compose stack for real on a local Docker engine, end to end, as root (deploy/README.md).
	scripts/install-test-deps.sh compose
	$(BIN)/python -m tests.deploy.compose_run

clean:  ## Forget local state (storage, MLflow store, Dagster runs).
	rm -rf $(STATE)
