"""The smoke graph for real on the Postgres-backed profile: Dagster runs and MLflow in PostgreSQL."""

import os
import subprocess
import sys

import dagster as dg
import mlflow
import pytest

from skin_cancer_contract.registry import REGISTERED_MODEL_NAME
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_smoke_graph_on_postgres_with_the_multiprocess_executor(postgres_instance, tmp_path, monkeypatch):
    env = {
        **os.environ,
        **postgres_instance["env"],
        "SKIN_CANCER_PROFILE": "smoke",
        "SKIN_CANCER_STATE": str(tmp_path / "state"),
        "MLFLOW_EXPERIMENT_NAME": "postgres-smoke",
    }
    done = subprocess.run(
        [sys.executable, "-m", "skin_cancer_assets.cli"], env=env, cwd=REPO, capture_output=True, text=True, timeout=1500
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "champion: skin-cancer-classifier version" in done.stdout

    for name, value in postgres_instance["env"].items():  # the instance file reads DAGSTER_PG_*
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(str(postgres_instance["dagster_home"])) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="train_and_elect"))
        assert runs and runs[0].status == dg.DagsterRunStatus.SUCCESS
        for name in ("raw_images", "basic_cnn", "resnet50", "crossval_cnn", "efficientnet_lite0", "champion_model"):
            assert instance.get_latest_materialization_event(dg.AssetKey(name)) is not None
    client = mlflow.MlflowClient(postgres_instance["tracking_uri"])
    champion = client.get_model_version_by_alias(REGISTERED_MODEL_NAME, "champion")
    assert champion.tags["model_class"] in {"basic_cnn", "resnet50", "crossval_cnn", "efficientnet_lite0"}
