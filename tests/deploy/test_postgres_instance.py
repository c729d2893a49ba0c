"""The Postgres-backed profile for real: Dagster's instance and MLflow's backend in PostgreSQL,
started by deploy/local-postgres/start.sh, and the Compose stack's database init script."""

import os
import subprocess
import uuid

import dagster as dg
import mlflow
import pytest
import sqlalchemy
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from tests.deploy.deploy_support import DEPLOY


@dg.asset
def postgres_probe() -> int:
    return 42


def test_dagster_instance_keeps_runs_in_postgres(instance_env):
    with dg.DagsterInstance.from_config(instance_env["DAGSTER_HOME"]) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        result = dg.materialize([postgres_probe], instance=instance)
        assert result.success
        assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_latest_materialization_event(dg.AssetKey("postgres_probe")) is not None


def test_start_script_is_idempotent_and_keeps_its_password(postgres_cluster):
    again = subprocess.run(
        [str(DEPLOY / "local-postgres" / "start.sh"), str(os.path.dirname(postgres_cluster["DAGSTER_HOME"])),
         postgres_cluster["DAGSTER_PG_PORT"]],
        capture_output=True, text=True, timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert f"export DAGSTER_PG_PASSWORD={postgres_cluster['DAGSTER_PG_PASSWORD']}" in again.stdout


def test_compose_init_script_creates_both_databases(postgres_cluster):
    suffix = uuid.uuid4().hex[:8]
    wanted = {f"dagster_{suffix}", f"mlflow_{suffix}"}
    env = {
        **os.environ,
        "PGHOST": postgres_cluster["DAGSTER_PG_HOST"],
        "PGPORT": postgres_cluster["DAGSTER_PG_PORT"],
        "PGPASSWORD": postgres_cluster["DAGSTER_PG_PASSWORD"],
        "POSTGRES_USER": postgres_cluster["DAGSTER_PG_USER"],
        "DAGSTER_PG_DB": f"dagster_{suffix}",
        "MLFLOW_PG_DB": f"mlflow_{suffix}",
    }
    script = DEPLOY / "docker" / "postgres-init" / "10-create-databases.sh"
    for _ in range(2):  # a second pass finds both and changes nothing
        done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    engine = sqlalchemy.create_engine(postgres_cluster["MLFLOW_BACKEND_STORE_URI"])
    with engine.connect() as connection:
        names = {row[0] for row in connection.execute(sqlalchemy.text("SELECT datname FROM pg_database"))}
    engine.dispose()
    assert wanted <= names


@pytest.mark.slow
def test_mlflow_server_keeps_experiments_in_postgres(postgres_instance, postgres_cluster):
    client = mlflow.MlflowClient(postgres_instance["tracking_uri"])
    name = f"deploy-check-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "test_roc_auc", 0.75)
    client.log_text(run.info.run_id, "stored through the server", "note.txt")
    client.set_terminated(run.info.run_id)

    assert client.get_run(run.info.run_id).data.metrics == {"test_roc_auc": 0.75}
    assert [item.path for item in client.list_artifacts(run.info.run_id)] == ["note.txt"]
    engine = sqlalchemy.create_engine(postgres_cluster["MLFLOW_BACKEND_STORE_URI"])
    with engine.connect() as connection:
        stored = connection.execute(
            sqlalchemy.text("SELECT name FROM experiments WHERE experiment_id = :id"), {"id": int(experiment_id)}
        ).scalar_one()
    engine.dispose()
    assert stored == name
