"""Fixtures of the deployment suite: a real PostgreSQL from deploy/local-postgres/start.sh and a
real `mlflow server` on it, for the Postgres-backed profile."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.deploy.deploy_support import throwaway_postgres
from tests.helpers import VENV_BIN, Service, free_port, wait_for_http


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL on loopback with databases `dagster` and `mlflow`.

    Yields the variables start.sh prints: DAGSTER_PG_HOST/PORT/USER/PASSWORD/DB, DAGSTER_HOME
    (holding deploy/local-postgres/dagster.yaml) and MLFLOW_BACKEND_STORE_URI.
    """
    with throwaway_postgres(free_port()) as env:
        yield env


@pytest.fixture(scope="session")
def postgres_mlflow_server(postgres_cluster):
    """`mlflow server` with its backend in the cluster's `mlflow` database; yields its URL."""
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="skin-cancer-mlflow-"))
    server = Service(
        [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", postgres_cluster["MLFLOW_BACKEND_STORE_URI"],
         "--artifacts-destination", str(work / "artifacts")],
        log_path=work / "mlflow.log",
        # The GenAI job runner adds worker processes that only slow the start down here.
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        cwd=work,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # A new database runs every MLflow migration first: most of a minute on two cores.
        wait_for_http(f"{url}/health", timeout=240, process=server.process)
    except Exception as error:
        server.stop()
        raise RuntimeError(f"mlflow server on Postgres did not start:\n{server.log_tail()}") from error
    yield url
    server.stop()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_instance(postgres_cluster, postgres_mlflow_server):
    """The Postgres-backed profile, ready for a whole run of the graph.

    Yields {"env": variables to add to os.environ (Dagster instance on Postgres, MLflow
    tracking server on Postgres), "dagster_home": Path, "tracking_uri": str}. To materialize
    the smoke graph on it: `subprocess.run([python, "-m", "skin_cancer_assets.cli"],
    env={**os.environ, **postgres_instance["env"], "SKIN_CANCER_PROFILE": "smoke"})`.
    """
    env = {
        **postgres_cluster,
        "MLFLOW_TRACKING_URI": postgres_mlflow_server,
    }
    yield {"env": env, "dagster_home": Path(env["DAGSTER_HOME"]), "tracking_uri": postgres_mlflow_server}


@pytest.fixture
def instance_env(monkeypatch, postgres_cluster):
    """os.environ pointing Dagster at the cluster, as the instance files expect."""
    for name, value in postgres_cluster.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)
