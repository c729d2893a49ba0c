"""Run the real graph in-process for tests (one process: TensorFlow is imported once)."""

from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import mlflow

from skin_cancer_assets.definitions import defs
from skin_cancer_assets.environment import build_resources, profile_from_env
from skin_cancer_contract.registry import REGISTERED_MODEL_NAME

TRAIN_AND_ELECT = dg.AssetSelection.groups("data", "training", "selection")


def materialize_graph(dagster_home: Path, selection=TRAIN_AND_ELECT, instance=None, **kwargs):
    """Materialize `selection` with resources built from the current environment."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    instance = instance or dg.DagsterInstance.local_temp(str(dagster_home))
    assets = list(defs.assets)
    try:
        return dg.materialize(assets, selection=selection, resources=build_resources(profile_from_env()), instance=instance, **kwargs)
    finally:  # in-process runs have no end-of-run hook: close the MLflow run the resource opened
        mlflow.end_run()


def register_candidate(client, experiment: str, model_folder: str, roc_auc: float, digest: str) -> str:
    """A registered version holding a real model folder, with a chosen test ROC-AUC."""
    run = client.create_run(client.get_experiment_by_name(experiment).experiment_id, run_name="synthetic-score")
    scores = {"test_roc_auc": roc_auc, "test_recall_malignant": 0.9, "test_accuracy": 0.8,
              "test_specificity": 0.8, "test_precision": 0.8}
    for name, value in scores.items():
        client.log_metric(run.info.run_id, name, value)
    client.log_artifacts(run.info.run_id, model_folder, "model")
    client.set_terminated(run.info.run_id)
    mlflow.set_tracking_uri(client.tracking_uri)
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", REGISTERED_MODEL_NAME).version
    for key, value in {"model_class": "basic_cnn", "threshold": "0.5", "test_set_digest": digest}.items():
        client.set_model_version_tag(REGISTERED_MODEL_NAME, version, key, value)
    return version


@contextmanager
def champion_alias_restored(client):
    """Put the `champion` alias back where it was, for the suites that follow."""
    original = client.get_model_version_by_alias(REGISTERED_MODEL_NAME, "champion").version
    try:
        yield
    finally:
        client.set_registered_model_alias(REGISTERED_MODEL_NAME, "champion", original)
