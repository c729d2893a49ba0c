"""The smoke graph end to end against a real MLflow server, and the champion election against it:
registry errors, the quality bar, a champion from another data version, two elections at once."""

import json
import os
import shutil
import subprocess
import sys
import time

import dagster as dg
import mlflow
import mlflow.keras
import numpy as np
import pytest

from skin_cancer_assets.assets.champion import ELECTION_POOL
from skin_cancer_assets.assets.models import TRAINING_IMAGES, _members_on
from skin_cancer_assets.model_zoo import ZOO, build_model
from skin_cancer_assets.training_config import TrainingConfig
from skin_cancer_contract.evaluation import METRICS
from skin_cancer_contract.imaging import decode_image
from skin_cancer_contract.registry import CHAMPION_ALIAS, REGISTERED_MODEL_NAME, VALIDATION_PROBABILITIES
from tests.conftest import DATASET, REPO
from tests.skin_cancer_assets.pipeline import (
    ELECTION,
    champion_version,
    materialize_graph,
    offer_candidate,
    register_candidate,
    validation_split_of,
)
from tests.skin_cancer_assets.registry_proxy import FailingProxy

MODELS = {spec.name for spec in ZOO}
ENSEMBLES = {spec.name: spec.members for spec in ZOO if spec.members}


@pytest.fixture(scope="module")
def client(smoke_champion):
    return mlflow.MlflowClient(smoke_champion["tracking_uri"])


def _runs_by_class(client) -> dict:
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id], "tags.model_class != ''")
    return {run.data.tags["model_class"]: run for run in runs}


def test_each_model_logs_its_own_run_with_params_curves_and_metrics(smoke_champion, client):
    runs = _runs_by_class(client)
    assert set(runs) == MODELS
    for name, run in runs.items():
        assert run.data.tags.get("mlflow.parentRunId"), f"{name} is not nested in the Dagster run's MLflow run"
        assert run.data.params["model_class"] == name and run.data.params["target_recall"]
        assert ("learning_rate" in run.data.params) == (name not in ENSEMBLES), "an ensemble logs only what it reads"
        for metric in ("test_accuracy", "test_roc_auc", "test_recall_malignant", "test_specificity",
                       "test_precision", "test_true_positives", "val_roc_auc", "threshold"):
            assert metric in run.data.metrics, f"{name} misses {metric}"
        assert run.data.metrics["val_margin_specificity_cost"] >= 0.0  # a margin only ever lowers the threshold
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {TRAINING_IMAGES, "confusion_matrix.png", "test_curves.png"} <= artifacts
        for metric in ("accuracy", "recall_malignant", "specificity", "roc_auc"):
            low, high = run.data.metrics[f"test_{metric}_low"], run.data.metrics[f"test_{metric}_high"]
            assert low <= run.data.metrics[f"test_{metric}"] <= high
        assert {"accuracy_threshold", "accuracy_point_test_accuracy", "accuracy_point_test_accuracy_low"} <= set(run.data.metrics)
        assert ("learning_curves.png" in artifacts) == (name not in ENSEMBLES), "an ensemble has no epochs to draw"
        fitted = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{TRAINING_IMAGES}")["sha256"]
        held_out = int(run.data.params["validation_images"])
        assert 0 < held_out < int(run.data.params["train_images"]) == len(fitted) + held_out
        assert all(len(sha256) == 64 for sha256 in fitted)
        scored = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{VALIDATION_PROBABILITIES}")
        assert len(scored["probability_malignant"]) == len(scored["sha256"]) == held_out  # production_drift's reference
        assert all(0 <= p <= 1 for p in scored["probability_malignant"]) and not set(scored["sha256"]) & set(fitted)
    crossval = runs["crossval_cnn"].data.metrics
    assert {"fold_0_val_roc_auc", "fold_1_val_roc_auc", "cv_mean_val_roc_auc"} <= set(crossval)
    history = client.get_metric_history(runs["basic_cnn"].info.run_id, "loss")
    assert len(history) == 1 and history[0].step == 0  # one point per epoch (smoke: one epoch)


def test_each_model_is_a_logged_model_with_its_evaluation_linked(smoke_champion, client):
    experiment = client.get_experiment_by_name("smoke")
    for name, run in _runs_by_class(client).items():
        (logged,) = client.search_logged_models(
            [experiment.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
        )
        assert logged.name == name
        linked = {metric.key for metric in logged.metrics}
        assert {"val_roc_auc", "test_roc_auc", "threshold"} <= linked
        assert "loss" not in linked, "the per-epoch curves stay on the run"
        versions = client.search_model_versions(f"name='{REGISTERED_MODEL_NAME}' and run_id='{run.info.run_id}'")
        # other suites register more versions from the same run: the one made by log_model is among them
        assert f"models:/{logged.model_id}" in {version.source for version in versions}


def test_each_model_is_a_registered_version_tagged_for_the_election(smoke_champion, client):
    # the smoke graph's own candidates: other suites register versions from other data on this server
    candidates = smoke_champion["champion"]["candidates"]
    versions = [client.get_model_version(REGISTERED_MODEL_NAME, c["version"]) for c in candidates]
    assert [v.tags["model_class"] for v in versions] == [c["model_class"] for c in candidates]
    assert {v.tags["model_class"] for v in versions} == MODELS
    assert len({v.tags["dagster_run_id"] for v in versions}) == 1
    for version in versions:
        assert 0.0 <= float(version.tags["threshold"]) <= 1.0 and 0.0 <= float(version.tags["accuracy_threshold"]) <= 1.0
        card = version.description  # the model card, with both operating points and their intervals
        assert "not a diagnosis" in card and "served (malignant recall 0.90 with margin)" in card
        assert "accuracy-maximising (reported)" in card and "Wilson for proportions" in card
        assert f"{float(version.tags['accuracy_threshold']):.3f}" in card
    # every class was measured on the same validation images and the same test images
    assert len({v.tags["validation_digest"] for v in versions}) == 1
    by_class = {v.tags["model_class"]: v for v in versions}
    for ensemble, members in ENSEMBLES.items():  # which versions an ensemble combines, as its lineage in MLflow
        assert {f"member_{m}": by_class[m].version for m in members}.items() <= by_class[ensemble].tags.items()
    assert len({v.tags["test_digest"] for v in versions}) == 1


def test_every_candidate_record_holds_its_runs_validation_and_test_metrics(smoke_champion, client):
    """The election ranks on the record's validation metrics: they must be the run's `val_*`, never its `test_*`."""
    for candidate in smoke_champion["champion"]["candidates"]:
        logged = client.get_run(candidate["run_id"]).data.metrics
        assert candidate["validation_metrics"] == pytest.approx({m: logged[f"val_{m}"] for m in METRICS}, nan_ok=True)
        assert candidate["test_metrics"] == pytest.approx({m: logged[f"test_{m}"] for m in METRICS}, nan_ok=True)


def test_an_ensemble_refuses_members_validated_on_other_images(smoke_champion):
    """A member trained with another validation split has fitted some of the ensemble's validation rows."""
    records = {c["model_class"]: c for c in smoke_champion["champion"]["candidates"]}
    (ensemble, members), *_ = ENSEMBLES.items()
    spec = next(spec for spec in ZOO if spec.name == ensemble)
    inputs = {f"{m}_candidate": records[m] for m in members}
    digest = records[ensemble]["validation_digest"]
    assert _members_on(digest, spec, inputs) == {f"member_{m}": records[m]["version"] for m in members}
    inputs[f"{members[1]}_candidate"] = {**records[members[1]], "validation_digest": "another-split"}
    with pytest.raises(dg.Failure, match=f"{members[1]} v{records[members[1]]['version']} was validated on other images"):
        _members_on(digest, spec, inputs)


def test_the_first_election_promotes_the_best_candidate_and_its_alias_predicts(smoke_champion, client):
    champion = smoke_champion["champion"]
    # the session's first election on this server (test_s3_pipeline keeps its own store)
    assert champion["decision"] == "promoted" and champion["incumbent"] is None
    assert champion["reason"].startswith("no champion yet")
    candidates = champion["candidates"]
    assert {c["model_class"] for c in candidates} == MODELS
    best = max(c["validation_metrics"]["roc_auc"] for c in candidates)
    assert champion["validation_metrics"]["roc_auc"] == best
    assert len({c["validation_digest"] for c in candidates}) == 1 and champion["validation_digest"] == candidates[0]["validation_digest"]

    mlflow.set_tracking_uri(smoke_champion["tracking_uri"])
    assert champion_version(client) == smoke_champion["version"] == champion["version"]
    model = mlflow.keras.load_model(smoke_champion["model_uri"])
    size = model.input_shape[1]
    paths = [next((DATASET / "test" / label).iterdir()) for label in ("benign", "malignant")]
    images = np.stack([decode_image(path.read_bytes(), size) for path in paths])
    probs = model.predict(images, verbose=0)
    assert probs.shape == (2, 1) and np.all((probs >= 0) & (probs <= 1))


class Arena:
    """Today's smoke arrays in a state folder of their own, a Dagster instance, and the smoke champion's network to register as synthetic candidates whose
    validation probabilities have a chosen skill."""

    def __init__(self, smoke_champion, client, tmp_path, monkeypatch):
        self.client, self.server, self.root = client, smoke_champion["tracking_uri"], tmp_path
        self.state = tmp_path / "state"
        for name, value in {
            "MLFLOW_TRACKING_URI": self.server, "MLFLOW_EXPERIMENT_NAME": "smoke", "SKIN_CANCER_STATE": str(self.state),
        }.items():
            monkeypatch.setenv(name, value)
        mlflow.set_tracking_uri(self.server)
        self.model_folder = mlflow.artifacts.download_artifacts(
            f"models:/{REGISTERED_MODEL_NAME}/{smoke_champion['version']}", dst_path=str(tmp_path / "model")
        )
        (tmp_path / "dagster").mkdir()
        self.instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
        arrays = materialize_graph(tmp_path / "dagster", selection=dg.AssetSelection.groups("data"), instance=self.instance)
        self.validation = validation_split_of(arrays)

    def candidate(self, skill: float, digest: str | None = None, trained_on=(), scored: slice = slice(None)) -> dict:
        """A registered candidate of `skill` whose run scored the validation images of `scored`."""
        validation = {**self.validation, "image_ids": self.validation["image_ids"][scored], "labels": self.validation["labels"][scored]}
        return register_candidate(self.client, "smoke", self.model_folder, validation, skill, digest or self.validation["digest"], trained_on)

    def crown(self, record: dict) -> dict:
        self.client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, record["version"])
        return record

    def elect(self, **config) -> dg.ExecuteInProcessResult:
        run_config = {"ops": {"champion_model": {"config": config}}} if config else None
        return materialize_graph(self.root / "dagster", selection=ELECTION, instance=self.instance, raise_on_error=False, run_config=run_config)

    def per_class(self, image_ids) -> tuple[int, int]:
        """(malignant, benign) validation images among `image_ids`."""
        labels = dict(zip(self.validation["image_ids"], self.validation["labels"].tolist()))
        malignant = sum(labels[image_id] for image_id in image_ids)
        return malignant, len(image_ids) - malignant


@pytest.fixture
def arena(smoke_champion, client, tmp_path, monkeypatch, keep_champion_alias) -> Arena:
    return Arena(smoke_champion, client, tmp_path, monkeypatch)


def failure_message(result) -> str:
    return "\n".join(event.step_failure_data.error.to_string() for event in result.get_step_failure_events())


def champion_materialized(result) -> bool:
    return any(event.asset_key == dg.AssetKey("champion_model") for event in result.get_asset_materialization_events())


def test_a_worse_challenger_keeps_the_alias_and_a_better_one_moves_it_on_evidence(arena, client):
    champion = arena.crown(arena.candidate(0.2))

    offer_candidate(worse := arena.candidate(0.0))
    kept = arena.elect().output_for_node("champion_model")
    assert kept["decision"] == "kept" and kept["version"] == champion["version"]
    assert kept["incumbent"]["version"] == champion["version"] and "does not beat" in kept["reason"]
    assert {c["version"] for c in kept["candidates"]} == {worse["version"]}
    assert kept["comparison"]["lower_bound"] <= 0 and kept["comparison"]["method"].startswith("DeLong")
    assert champion_version(client) == champion["version"]

    offer_candidate(better := arena.candidate(1.0))
    result = arena.elect()
    promoted = result.output_for_node("champion_model")
    assert promoted["decision"] == "promoted" and promoted["version"] == better["version"]
    assert promoted["incumbent"]["version"] == champion["version"]
    comparison = promoted["comparison"]
    assert (comparison["malignant_images"], comparison["benign_images"]) == arena.per_class(arena.validation["image_ids"])
    assert comparison["difference"] > comparison["lower_bound"] > 0
    metadata = result.asset_materializations_for_node("champion_model")[0].metadata
    assert metadata["roc_auc_difference_lower_bound"].value == comparison["lower_bound"]
    assert metadata["comparison_malignant_images"].value == comparison["malignant_images"]
    assert champion_version(client) == better["version"]


def test_too_few_images_per_class_keep_the_champion_however_good_the_challenger(arena, client):
    champion = arena.crown(arena.candidate(-1.0))
    offer_candidate(arena.candidate(1.0))
    malignant, benign = arena.per_class(arena.validation["image_ids"])
    record = arena.elect(min_comparison_images=min(malignant, benign) + 1).output_for_node("champion_model")
    assert record["decision"] == "kept" and champion_version(client) == champion["version"]
    assert f"{malignant} malignant and {benign} benign" in record["reason"] and "too few images" in record["reason"]
    assert record["comparison"]["difference"] is None


def test_a_negative_min_improvement_is_refused_and_leaves_the_alias(arena, client):
    champion = arena.crown(arena.candidate(1.0))
    offer_candidate(arena.candidate(0.0))
    result = arena.elect(min_improvement=-0.1)
    assert not result.success and not champion_materialized(result)
    message = failure_message(result)  # the launchpad's config is refused before anything is read
    assert "min_improvement" in message and "greater than or equal to 0" in message
    assert champion_version(client) == champion["version"]


def test_a_registry_error_while_reading_the_champion_fails_the_run_and_leaves_the_alias(arena, client, monkeypatch):
    champion = arena.crown(arena.candidate(0.0))
    offer_candidate(arena.candidate(1.0))
    proxy = FailingProxy(arena.server, failing_path="/registered-models/get")  # the alias lookup answers 503
    monkeypatch.setenv("MLFLOW_TRACKING_URI", proxy.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    try:
        result = arena.elect()
    finally:
        proxy.stop()
        mlflow.set_tracking_uri(arena.server)
    assert not result.success and proxy.failed >= 1
    message = failure_message(result)
    assert f"MLflow tracking server {proxy.url} (MLFLOW_TRACKING_URI) failed to read the alias" in message
    assert "503" in message and "was not touched" in message
    assert not champion_materialized(result)
    assert champion_version(client) == champion["version"]


def test_a_quality_bar_above_every_candidate_leaves_the_alias_and_records_why(arena, client):
    champion = arena.crown(arena.candidate(-1.0))
    offer_candidate(challenger := arena.candidate(0.0))
    result = arena.elect(min_roc_auc=0.99)
    assert not result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "quality_bar" and not check.passed
    assert check.metadata["decision"].value == "rejected"
    assert challenger["validation_metrics"]["roc_auc"] < 0.99
    assert "is below the bar 0.9900: the alias stays" in check.metadata["reason"].value
    assert "quality bar 0.9900 not met" in failure_message(result) and "nothing is deployed" in failure_message(result)
    assert not champion_materialized(result)  # so the redeploy sensor has nothing to deploy
    assert champion_version(client) == champion["version"]


def test_a_champion_that_trained_on_validation_images_is_compared_only_on_the_others(arena):
    """Possible only when the split itself changed: those images would flatter the champion."""
    validation = arena.validation
    trained_on = validation["image_ids"][:3]
    champion = arena.crown(arena.candidate(-1.0, digest="another-split", trained_on=trained_on))
    offer_candidate(arena.candidate(1.0))

    record = arena.elect().output_for_node("champion_model")
    comparison = record["comparison"]
    assert (comparison["malignant_images"], comparison["benign_images"]) == arena.per_class(validation["image_ids"][3:])
    assert record["incumbent"]["version"] == champion["version"] and record["incumbent"]["validation_metrics"]["roc_auc"] == 0.0
    assert record["decision"] == "promoted"


def test_a_champion_is_scored_on_validation_images_added_after_it_was_trained(arena):
    """Its run scored the images of its day; the election predicts the rest with the champion itself."""
    validation = arena.validation
    champion = arena.crown(arena.candidate(1.0, digest="yesterdays-split", scored=slice(0, len(validation["image_ids"]) // 2)))
    offer_candidate(arena.candidate(1.0))

    record = arena.elect().output_for_node("champion_model")
    comparison = record["comparison"]
    assert (comparison["malignant_images"], comparison["benign_images"]) == arena.per_class(validation["image_ids"])
    assert record["incumbent"]["version"] == champion["version"]


def test_a_candidate_from_another_data_version_is_left_out_and_the_others_elect(arena):
    arena.crown(arena.candidate(-1.0))
    offer_candidate(current := arena.candidate(0.5))
    stale = arena.candidate(1.0, digest="another-data-version")  # better, but measured on other images
    offer_candidate(stale, model_classes=[ZOO[0].name])

    record = arena.elect().output_for_node("champion_model")
    assert record["decision"] == "promoted" and record["version"] == current["version"]
    assert stale["version"] not in {c["version"] for c in record["candidates"]}
    assert len(record["candidates"]) == len(ZOO) - 1

    offer_candidate(arena.candidate(1.0, digest="another-data-version"))
    result = arena.elect()
    assert not result.success and "no candidate was measured on today's validation split" in failure_message(result)


def test_a_champion_of_another_input_size_is_resized_and_scored_on_the_whole_validation_split(arena, tmp_path):
    network = build_model(ZOO[0], TrainingConfig(image_size=32), input_size=32)  # today's arrays are 64 px
    folder = tmp_path / "32px"
    mlflow.keras.save_model(network, str(folder))
    no_images = {**arena.validation, "image_ids": [], "labels": arena.validation["labels"][:0]}
    champion = register_candidate(arena.client, "smoke", str(folder), no_images, 0.0, "another-data-version", trained_on=["elsewhere"])
    arena.crown(champion)
    offer_candidate(candidate := arena.candidate(-1.0))

    record = arena.elect().output_for_node("champion_model")
    comparison = record["comparison"]
    assert (comparison["malignant_images"], comparison["benign_images"]) == arena.per_class(arena.validation["image_ids"])
    rescored = record["incumbent"]["validation_metrics"]["roc_auc"]
    assert 0.0 < rescored <= 1.0
    assert {c["validation_metrics"]["roc_auc"] for c in record["candidates"]} == {0.0}  # candidates keep their scores
    assert record["decision"] == "kept" and record["version"] == champion["version"] != candidate["version"]


def test_two_elections_launched_together_run_one_after_the_other_and_the_best_is_aliased(arena, client, tmp_path):
    home = tmp_path / "shared-instance"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # the instance file under test
    arena.crown(arena.candidate(-1.0))
    offers = {}
    for name, skill in (("best", 1.0), ("second", 0.1)):
        state = tmp_path / name
        shutil.copytree(arena.state / "storage", state / "storage")
        os.environ["SKIN_CANCER_STATE"] = str(state)  # restored by the arena's monkeypatch
        offer_candidate(offers.setdefault(name, arena.candidate(skill)))

    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        assert storage.initialize_concurrency_limit_to_default(ELECTION_POOL)
        assert storage.get_concurrency_info(ELECTION_POOL).slot_count == 1
        # An election already holds the pool's one slot while both start.
        assert storage.claim_concurrency_slot(ELECTION_POOL, "earlier-election", "champion_model").is_claimed
        elections = [
            subprocess.Popen(
                [sys.executable, "-c", "from tests.skin_cancer_assets.pipeline import elect_on_the_instance as e; e()"],
                cwd=REPO,
                env={**os.environ, "DAGSTER_HOME": str(home), "SKIN_CANCER_STATE": str(tmp_path / name), "PYTHONPATH": str(REPO)},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for name in offers
        ]
        try:
            deadline = time.monotonic() + 300
            while storage.get_concurrency_info(ELECTION_POOL).pending_step_count < 2:
                assert all(e.poll() is None for e in elections), [e.stdout.read().decode()[-3000:] for e in elections]
                assert time.monotonic() < deadline, "the two elections never queued on the pool"
                time.sleep(0.5)
            storage.free_concurrency_slot_for_step("earlier-election", "champion_model")
            for election in elections:
                output = election.communicate(timeout=300)[0].decode()
                assert election.returncode == 0, output[-3000:]
        finally:
            for election in elections:
                if election.poll() is None:
                    election.kill()

        steps = sorted(_election_step(instance, run.run_id) for run in instance.get_runs())
        assert len(steps) == 2
        (first_start, first_end, first), (second_start, _, second) = steps
        assert first_end <= second_start, "the two elections overlapped"
        assert second["incumbent"]["version"] == first["version"]  # the later one compared with the earlier's result
    assert champion_version(client) == offers["best"]["version"]


def _election_step(instance, run_id: str) -> tuple[float, float, dict]:
    """When the run's election step started and ended, and the champion record it stored."""
    events = instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS})
    times = {e.dagster_event.event_type: e.timestamp for e in events if e.step_key == "champion_model"}
    materialization = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    (uri,) = [
        r.event_log_entry.asset_materialization.metadata["storage_uri"].value
        for r in materialization
        if r.event_log_entry.asset_materialization.asset_key == dg.AssetKey("champion_model")
    ]
    with open(uri) as stored:
        record = json.load(stored)
    return times[dg.DagsterEventType.STEP_START], times[dg.DagsterEventType.STEP_SUCCESS], record
