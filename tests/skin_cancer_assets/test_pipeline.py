"""The smoke graph end to end against a real MLflow server, and the champion election rules."""

import dagster as dg
import mlflow
import mlflow.keras
import numpy as np
import pytest

from skin_cancer_contract.registry import REGISTERED_MODEL_NAME
from skin_cancer_contract.evaluation import split_digest
from skin_cancer_contract.imaging import decode_image
from skin_cancer_assets.model_zoo import ZOO
from tests.conftest import DATASET
from tests.skin_cancer_assets.pipeline import materialize_graph, register_candidate


@pytest.fixture(scope="module")
def client(smoke_champion):
    return mlflow.MlflowClient(smoke_champion["tracking_uri"])


def _runs_by_class(client) -> dict:
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id], "tags.model_class != ''")
    return {run.data.tags["model_class"]: run for run in runs}


def test_each_model_logs_its_own_run_with_params_curves_and_test_metrics(smoke_champion, client):
    runs = _runs_by_class(client)
    assert set(runs) == {spec.name for spec in ZOO}
    for name, run in runs.items():
        assert run.data.tags.get("mlflow.parentRunId"), f"{name} is not nested in the Dagster run's MLflow run"
        assert run.data.params["learning_rate"] and run.data.params["model_class"] == name
        for metric in ("test_accuracy", "test_roc_auc", "test_recall_malignant", "test_specificity",
                       "test_precision", "test_true_positives", "threshold"):
            assert metric in run.data.metrics, f"{name} misses {metric}"
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"model", "learning_curves.png", "confusion_matrix.png"} <= artifacts
    crossval = runs["crossval_cnn"].data.metrics
    assert {"fold_0_val_roc_auc", "fold_1_val_roc_auc", "cv_mean_val_roc_auc"} <= set(crossval)
    history = client.get_metric_history(runs["basic_cnn"].info.run_id, "loss")
    assert len(history) == 1 and history[0].step == 0  # one point per epoch (smoke: one epoch)


def test_each_model_is_a_registered_version_tagged_with_its_class(smoke_champion, client):
    versions = client.search_model_versions(f"name='{REGISTERED_MODEL_NAME}'")
    classes = {v.tags.get("model_class") for v in versions}
    assert {spec.name for spec in ZOO} <= classes
    for version in versions:
        if version.tags.get("model_class") in {spec.name for spec in ZOO}:
            assert 0.0 <= float(version.tags["threshold"]) <= 1.0


def test_the_champion_alias_loads_and_predicts_real_images(smoke_champion, client):
    mlflow.set_tracking_uri(smoke_champion["tracking_uri"])
    alias = client.get_model_version_by_alias(REGISTERED_MODEL_NAME, "champion")
    assert alias.version == smoke_champion["version"]
    model = mlflow.keras.load_model(smoke_champion["model_uri"])
    size = model.input_shape[1]
    paths = [next((DATASET / "test" / label).iterdir()) for label in ("benign", "malignant")]
    images = np.stack([decode_image(path.read_bytes(), size) for path in paths])
    probs = model.predict(images, verbose=0)
    assert probs.shape == (2, 1) and np.all((probs >= 0) & (probs <= 1))
    champion = smoke_champion["champion"]
    # another suite may have elected an earlier champion on the same server: either way it is served
    assert champion["decision"] in {"promoted", "kept"} and champion["metrics"]["roc_auc"] is not None


def test_a_worse_challenger_keeps_the_alias_and_a_better_one_moves_it(
    smoke_champion, client, tmp_path, monkeypatch, keep_champion_alias
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", smoke_champion["tracking_uri"])
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "smoke")
    monkeypatch.setenv("SKIN_CANCER_STATE", str(tmp_path / "state"))
    mlflow.set_tracking_uri(smoke_champion["tracking_uri"])
    model_folder = mlflow.artifacts.download_artifacts(
        f"models:/{REGISTERED_MODEL_NAME}/{smoke_champion['version']}", dst_path=str(tmp_path / "model")
    )
    instance = dg.DagsterInstance.local_temp(str(tmp_path))
    arrays = materialize_graph(tmp_path, selection=dg.AssetSelection.groups("data"), instance=instance)
    digest = split_digest(
        arrays.output_for_node("preprocessed_arrays", "test_images"),
        arrays.output_for_node("preprocessed_arrays", "test_labels"),
    )
    champion = register_candidate(client, "smoke", model_folder, 0.90, digest)
    client.set_registered_model_alias(REGISTERED_MODEL_NAME, "champion", champion)

    def elect_with_candidate(roc_auc: float) -> dict:
        version = register_candidate(client, "smoke", model_folder, roc_auc, digest)
        for spec in ZOO:  # every class now offers this candidate
            instance.report_runless_asset_event(
                dg.AssetMaterialization(spec.name, metadata={"mlflow_model_version": int(version)})
            )
        result = materialize_graph(tmp_path, selection=dg.AssetSelection.assets("champion_model"), instance=instance)
        return {**result.output_for_node("champion_model"), "candidate": version}

    worse = elect_with_candidate(0.70)
    assert worse["decision"] == "kept" and worse["version"] == champion
    assert "does not beat" in worse["reason"]
    assert client.get_model_version_by_alias(REGISTERED_MODEL_NAME, "champion").version == champion

    better = elect_with_candidate(0.95)
    assert better["decision"] == "promoted" and better["version"] == better["candidate"]
    assert client.get_model_version_by_alias(REGISTERED_MODEL_NAME, "champion").version == better["candidate"]
