"""Run the real graph in-process for tests (one process: TensorFlow is imported once), and offer
the election registered candidates of chosen scores."""

import os
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np

from skin_cancer_assets.assets.models import TRAINING_IMAGES, candidate_key
from skin_cancer_assets.definitions import defs
from skin_cancer_assets.election import Candidate
from skin_cancer_assets.environment import profile_from_env
from skin_cancer_assets.pipeline_resources import artifact_store, build_resources
from skin_cancer_assets.model_zoo import ZOO
from skin_cancer_assets.splitting import rows_of
from skin_cancer_contract.evaluation import METRICS, evaluate
from skin_cancer_contract.registry import CHAMPION_ALIAS, REGISTERED_MODEL_NAME, VALIDATION_PROBABILITIES
from resources.storage import ArtifactIOManager
from tests.helpers import environment
from tests.resources.test_storage import store_value

TRAIN_AND_ELECT = dg.AssetSelection.groups("data", "training", "selection")
ELECTION = dg.AssetSelection.assets("champion_model")


def materialize_graph(dagster_home: Path, selection=TRAIN_AND_ELECT, instance=None, **kwargs):
    """Materialize `selection` with resources built from the current environment."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    instance = instance or dg.DagsterInstance.local_temp(str(dagster_home))
    assets = list(defs.assets)
    try:
        return dg.materialize(assets, selection=selection, resources=build_resources(profile_from_env()), instance=instance, **kwargs)
    finally:  # in-process runs have no end-of-run hook: close the MLflow run the resource opened
        mlflow.end_run()


def train_smoke_champion(state: Path, tracking_uri: str) -> dict:
    """The real smoke graph materialized in this process into `tracking_uri` (experiment `smoke`),
    its storage and instance under `state`; sets the alias `champion`. The process's environment
    is put back afterwards. Returns the champion's record."""
    env = {"SKIN_CANCER_STATE": str(state), "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_EXPERIMENT_NAME": "smoke"}
    with environment(env):
        result = materialize_graph(state / "dagster")
    return result.output_for_node("champion_model")


def validation_split_of(arrays) -> dict:
    """The shared validation rows of arrays materialized by `materialize_graph`: images, labels,
    the sha256 of each image, and the split's digest."""
    images = arrays.output_for_node("preprocessed_arrays", "train_images")
    labels = arrays.output_for_node("preprocessed_arrays", "train_labels")
    image_ids = arrays.output_for_node("preprocessed_arrays", "train_image_ids")
    split = arrays.output_for_node("validation_split")
    rows = rows_of(image_ids, set(split["validation_images"]))[1]
    return {
        "images": images[rows],
        "labels": labels[rows],
        "image_ids": [image_ids[row] for row in rows],
        "digest": split["digest"],
    }


def synthetic_scores(labels: np.ndarray, skill: float) -> np.ndarray:
    """Probabilities of malignant for images of `labels`: `skill` 0 is noise, 0.5 and above separates
    the classes, -0.5 and below ranks every benign image above every malignant one. The same noise
    for every call, so equal skills score alike."""
    noise = np.random.default_rng(7).random(len(labels))
    favoured = labels if skill >= 0 else 1 - labels
    return abs(skill) * favoured + (1 - abs(skill)) * noise


def register_candidate(
    client, experiment: str, model_folder: str, validation: dict, skill: float, digest: str | None = None,
    trained_on=(), model_class="basic_cnn",
) -> dict:
    """A registered version holding a real model folder, scored on `validation` with probabilities of
    the chosen `skill`, logged and tagged as the election reads them back; returns its candidate
    record. Its test scores are 1 - the validation ones: an election ranking on test would choose
    otherwise."""
    probabilities = synthetic_scores(validation["labels"], skill)
    measured = evaluate(validation["labels"], probabilities, 0.5)
    scores = {f"val_{name}": measured[name] for name in METRICS} | {f"test_{name}": 1 - measured[name] for name in METRICS}
    run = client.create_run(client.get_experiment_by_name(experiment).experiment_id, run_name="synthetic-score")
    for name, value in scores.items():
        client.log_metric(run.info.run_id, name, value)
    client.log_artifacts(run.info.run_id, model_folder, "model")
    client.log_dict(run.info.run_id, {"sha256": list(trained_on)}, TRAINING_IMAGES)
    scored = {"sha256": validation["image_ids"], "probability_malignant": probabilities.tolist()}
    client.log_dict(run.info.run_id, scored, VALIDATION_PROBABILITIES)
    client.set_terminated(run.info.run_id)
    mlflow.set_tracking_uri(client.tracking_uri)
    digest = digest or validation["digest"]
    tags = {"model_class": model_class, "threshold": "0.5", "validation_digest": digest, "test_digest": "synthetic"}
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", REGISTERED_MODEL_NAME, tags=tags).version
    return Candidate(
        model_class=model_class,
        version=str(version),
        run_id=run.info.run_id,
        threshold=0.5,
        validation_digest=digest,
        validation_metrics={name: scores[f"val_{name}"] for name in METRICS},
        test_digest="synthetic",
        test_metrics={name: scores[f"test_{name}"] for name in METRICS},
        validation_probabilities=dict(zip(validation["image_ids"], probabilities.tolist())),
    ).to_record()


def offer_candidate(record: dict, model_classes=tuple(spec.name for spec in ZOO)) -> None:
    """Store `record` as the candidate of `model_classes` (every class by default), where the
    election of a run with the current environment (SKIN_CANCER_STATE) loads it."""
    io_manager = ArtifactIOManager(store=artifact_store())
    for name in model_classes:
        store_value(io_manager, candidate_key(name), {**record, "model_class": name})


def champion_version(client) -> str:
    return client.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS).version


def elect_on_the_instance() -> None:
    """The election alone, on the instance at DAGSTER_HOME: what a second process runs."""
    with dg.DagsterInstance.get() as instance:
        materialize_graph(Path(os.environ["DAGSTER_HOME"]), selection=ELECTION, instance=instance)


@contextmanager
def champion_alias_restored(client):
    """Put the `champion` alias back where it was, for the suites that follow."""
    original = champion_version(client)
    try:
        yield
    finally:
        client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, original)
