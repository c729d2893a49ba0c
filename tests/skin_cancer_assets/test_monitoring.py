"""The monitoring group against real serving: real images and confirmed diagnoses go in through
serving's API, land in its prediction log (a folder or the S3 server), and the day's partitions
are materialized from there; the drift report lands beside the day's records."""

import io
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import httpx
import numpy as np
import pytest
from PIL import Image

from skin_cancer_assets.assets.monitoring import production_drift, production_performance, production_predictions
from skin_cancer_assets.definitions import defs
from skin_cancer_assets.environment import profile_from_env
from skin_cancer_assets.pipeline_resources import build_resources
from skin_cancer_assets.production import MIN_DRIFT_SAMPLES, STATISTICS, probability_column
from skin_cancer_contract.evaluation import wilson_interval
from skin_cancer_contract.monitoring import FEEDBACK, PREDICTIONS, batch_key
from tests.resources.s3_support import ACCESS_KEY, REGION, SECRET_KEY
from tests.serving.serving_support import DATASET, Serving
from tests.skin_cancer_assets.pipeline import materialize_graph

TOKEN = "monitoring-feedback-token"
PER_CLASS = 4
CONFIRMED_PER_CLASS = 3
DRIFT_PER_CLASS = 6


def _storage_env(kind: str, tmp_path, s3_server) -> dict:
    env = {"SKIN_CANCER_STATE": str(tmp_path / "state"), "AWS_BUCKET": ""}
    if kind == "s3":
        env |= {
            "AWS_BUCKET": s3_server.new_bucket(), "AWS_PREFIX": "monitoring", "AWS_ENDPOINT_URL": s3_server.endpoint,
            "AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }
    return env


def _send_traffic(server: Serving) -> tuple[list[dict], dict[str, str]]:
    """Real test images of both classes through /predict; the true class confirmed for some of each."""
    images = [(label, path) for label in ("benign", "malignant") for path in sorted((DATASET / "test" / label).glob("*.jpg"))[:PER_CLASS]]
    with httpx.Client(base_url=server.url, timeout=120) as client:
        response = client.post("/predict", files=[("file", (path.name, path.read_bytes(), "image/jpeg")) for _, path in images])
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        truth = {}
        for (label, _), prediction in zip(images, predictions):
            if sum(1 for t in truth.values() if t == label) < CONFIRMED_PER_CLASS:
                truth[prediction["prediction_id"]] = label
                answer = client.post(
                    "/feedback", json={"prediction_id": prediction["prediction_id"], "diagnosis": label}, headers={"Authorization": f"Bearer {TOKEN}"}
                )
                assert answer.status_code == 202, answer.text
    return predictions, truth


def _materialize(resources: dict, day: str, min_confirmed: int) -> tuple[dict, dict]:
    result = dg.materialize(
        [production_predictions, production_performance],
        partition_key=day,
        resources={"production_log": resources["production_log"]},
        run_config={"ops": {"production_performance": {"config": {"min_confirmed": min_confirmed}}}},
    )
    assert result.success
    return tuple(
        {name: value.value for name, value in result.asset_materializations_for_node(node)[0].metadata.items()}
        for node in ("production_predictions", "production_performance")
    )


def _drift_report(dagster_home: Path, day: str) -> str:
    """`production_drift` of `day` materialized from the smoke profile's training arrays; the location of its report."""
    materialize_graph(dagster_home, selection=dg.AssetSelection.groups("data"))
    result = materialize_graph(dagster_home, selection=dg.AssetSelection.assets(production_drift), partition_key=day)
    return result.asset_materializations_for_node("production_drift")[0].metadata["report"].value


def _assert_is_evidently_report(html: str, version: str) -> None:
    assert "drawDashboard(" in html  # Evidently's standalone HTML
    for column in [*STATISTICS, probability_column(version)]:
        assert f"Value Drift for column {column}" in html, column


@pytest.mark.parametrize("storage", ["local", "s3"])
def test_the_days_partitions_count_score_and_drift_test_what_serving_logged(storage, tmp_path, monkeypatch, smoke_champion, s3_server):
    env = _storage_env(storage, tmp_path, s3_server) | {
        "MLFLOW_TRACKING_URI": smoke_champion["tracking_uri"], "MLFLOW_EXPERIMENT_NAME": f"test-{tmp_path.name}", "SKIN_CANCER_DATA": str(DATASET),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    server = Serving(
        tmp_path,
        {**env, "MODEL_URI": smoke_champion["model_uri"], "SERVING_FEEDBACK_TOKEN": TOKEN, "PREDICTION_LOG_FLUSH_S": "0.2"},
    )
    try:
        server.wait_until(lambda client: client.get("/ready").status_code == 200, "became ready")
        predictions, truth = _send_traffic(server)
    finally:
        server.stop()  # stopping flushes what is queued
    day = datetime.now(timezone.utc).date().isoformat()
    resources = build_resources(profile_from_env())
    summary, scored = _materialize(resources, day, min_confirmed=len(truth))

    version = smoke_champion["version"]
    malignant = [p for p in predictions if p["label"] == "malignant"]
    assert summary["count"] == len(predictions) == 2 * PER_CLASS
    assert summary["by_model_version"] == {version: len(predictions)}
    assert summary["malignant_rate"] == pytest.approx(len(malignant) / len(predictions))
    assert 0 < summary["latency_p50_ms"] <= summary["latency_p95_ms"] < 120_000
    assert (summary["dropped_records"], summary["dropped_by_reason"]) == (0, {})
    label_of = {p["prediction_id"]: p["label"] for p in predictions}
    figures = scored["performance"][version]
    assert (figures["predictions"], figures["confirmed"], scored["confirmed"]) == (len(predictions), len(truth), len(truth))
    right = sum(label_of[i] == t for i, t in truth.items())
    caught = sum(label_of[i] == "malignant" for i, t in truth.items() if t == "malignant")
    cleared = sum(label_of[i] == "benign" for i, t in truth.items() if t == "benign")
    for name, successes, total in (("accuracy", right, len(truth)), ("recall_malignant", caught, CONFIRMED_PER_CLASS), ("specificity", cleared, CONFIRMED_PER_CLASS)):
        assert figures[name]["successes"] == successes and figures[name]["total"] == total, name
        assert figures[name]["value"] == pytest.approx(successes / total)
        assert figures[name]["ci95"] == pytest.approx(list(wilson_interval(successes, total)))
    assert f"| {version} | {len(predictions)} | {len(truth)} |" in scored["table"]

    _, too_few = _materialize(resources, day, min_confirmed=len(truth) + 1)
    entry = too_few["performance"][version]
    assert "accuracy" not in entry
    assert entry["reason"] == f"only {len(truth)} confirmed diagnoses, fewer than the {len(truth) + 1} needed to show figures"

    report = _drift_report(tmp_path / "dagster", day)
    if storage == "s3":
        key = f"monitoring/drift/date={day}/report.html"
        assert report == f"s3://{env['AWS_BUCKET']}/{key}"
        html = s3_server.client().get_object(Bucket=env["AWS_BUCKET"], Key=key)["Body"].read().decode()
    else:
        assert report == str(tmp_path / "state" / "storage" / "drift" / f"date={day}" / "report.html")
        html = Path(report).read_text()
    _assert_is_evidently_report(html, version)


@dg.asset(name="train_image_statistics")
def _training_statistics() -> np.ndarray:
    """A stand-in reference: a day without enough predictions is never compared with it."""
    return np.zeros((MIN_DRIFT_SAMPLES, len(STATISTICS)))


def _drift_check(resources: dict, day: str) -> dg.AssetCheckEvaluation:
    result = dg.materialize(
        [_training_statistics, production_drift], partition_key=day,
        resources={"production_log": resources["production_log"], "model_registry": resources["model_registry"]},
    )
    (check,) = result.get_asset_check_evaluations()
    return check


def _local_storage(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SKIN_CANCER_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("AWS_BUCKET", raising=False)
    return tmp_path / "state" / "storage"


def test_a_day_without_traffic_materializes_empty_and_warns_no_data(tmp_path, monkeypatch):
    _local_storage(tmp_path, monkeypatch)
    resources = build_resources(profile_from_env())
    summary, scored = _materialize(resources, "2026-03-01", min_confirmed=1)
    assert (summary["count"], summary["by_model_version"], summary["malignant_rate"]) == (0, {}, None)
    assert (summary["latency_p50_ms"], summary["dropped_records"], summary["malformed_lines"]) == (None, 0, 0)
    assert scored["performance"] == {} and scored["table"] == "no predictions on 2026-03-01"
    check = _drift_check(resources, "2026-03-01")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description == "no data: no predictions on 2026-03-01"


def _prediction(number: int, label: str) -> dict:
    return {
        "prediction_id": f"p{number}", "time": "2026-03-02T10:00:00+00:00", "model_version": "7", "label": label,
        "probability_malignant": 0.9 if label == "malignant" else 0.1, "latency_ms": 20.0,
        "channel_mean": [150.0, 110.0, 100.0], "channel_std": [40.0, 35.0, 30.0],
    }


def _confirmation(number: int, diagnosis: str, day: str) -> dict:
    return {"prediction_id": f"p{number}", "diagnosis": diagnosis, "time": f"{day}T12:00:00+00:00"}


def _write_log(storage: Path, kind: str, day: str, lines: list[str]) -> Path:
    path = storage / batch_key(kind, day, datetime(2026, 3, 2, 12, tzinfo=timezone.utc))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_malformed_lines_are_skipped_and_counted_and_every_confirmation_is_kept(tmp_path, monkeypatch):
    """A torn line, a foreign object and a record without its fields cost themselves only; repeated
    confirmations that agree count once, ones that disagree are a conflict, left out of the figures."""
    storage = _local_storage(tmp_path, monkeypatch)
    day = "2026-03-02"
    good = [_prediction(1, "malignant"), _prediction(2, "benign"), _prediction(3, "benign")]
    predictions_file = _write_log(
        storage, PREDICTIONS, day,
        [json.dumps(good[0]), '{"prediction_id": "torn', json.dumps(good[1]), "[1, 2]", json.dumps({"prediction_id": "p9"}), json.dumps(good[2])],
    )
    _write_log(storage, FEEDBACK, "2026-03-03", [
        json.dumps(_confirmation(1, "malignant", "2026-03-03")), json.dumps(_confirmation(1, "malignant", "2026-03-03")),
        json.dumps(_confirmation(2, "benign", "2026-03-03")), json.dumps(_confirmation(2, "malignant", "2026-03-03")),
        json.dumps(_confirmation(3, "benign", "2026-03-03")), "not json",
    ])
    summary, scored = _materialize(build_resources(profile_from_env()), day, min_confirmed=2)

    assert (summary["count"], summary["by_model_version"]) == (3, {"7": 3})
    assert summary["malformed_lines"] == 3
    assert summary["malformed_examples"] == [
        f"{predictions_file} line 2 is not JSON: Unterminated string starting at: line 1 column 19 (char 18)",
        f"{predictions_file} line 4 is not a JSON object",
        f"{predictions_file} line 5 lacks time, model_version, label, probability_malignant, channel_mean, channel_std",
    ]
    assert scored["malformed_lines"] == 4  # the three above and the feedback's
    assert (scored["confirmations"], scored["conflicts"], scored["confirmed"]) == (5, 1, 2)
    figures = scored["performance"]["7"]
    assert (figures["confirmations"], figures["conflicts"], figures["confirmed"]) == (5, 1, 2)
    assert figures["accuracy"]["successes"] == figures["accuracy"]["total"] == 2  # p2, in conflict, is not scored
    assert "| 7 | 3 | 2 | 1 |" in scored["table"]


def test_the_schedule_materializes_yesterday():
    schedule = defs.resolve_schedule_def("monitor_yesterday")
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 29, 0, 30, tzinfo=timezone.utc), repository_def=defs.get_repository_def()
    )
    (request,) = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-11-28"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def _darkened(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        dark = Image.eval(image.convert("RGB"), lambda value: int(value * 0.4))
    buffer = io.BytesIO()
    dark.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_darkened_images_trip_the_drift_check_and_real_ones_do_not(tmp_path, pipeline_env, smoke_champion):
    """The training arrays of the smoke profile are the reference; real test images, then darkened copies, are served.
    Each verdict's report is the one stored beside the day's records; a storage that cannot take it fails the run."""
    materialize_graph(tmp_path / "dagster", selection=dg.AssetSelection.groups("data"))
    storage = Path(pipeline_env["SKIN_CANCER_STATE"]) / "storage"
    paths = [path for label in ("benign", "malignant") for path in sorted((DATASET / "test" / label).glob("*.jpg"))[:DRIFT_PER_CLASS]]
    server = Serving(
        tmp_path,
        {**pipeline_env, "AWS_BUCKET": "", "MODEL_URI": smoke_champion["model_uri"],
         "MLFLOW_TRACKING_URI": smoke_champion["tracking_uri"], "PREDICTION_LOG_FLUSH_S": "0.2"},
    )
    day = datetime.now(timezone.utc).date().isoformat()
    verdicts, reports = {}, {}
    try:
        server.wait_until(lambda client: client.get("/ready").status_code == 200, "became ready")
        for name, transform in (("real", lambda data: data), ("darkened", _darkened)):
            shutil.rmtree(storage / "predictions", ignore_errors=True)  # each set alone in today's partition
            with httpx.Client(base_url=server.url, timeout=120) as client:
                files = [("file", (path.name, transform(path.read_bytes()), "image/jpeg")) for path in paths]
                assert client.post("/predict", files=files).status_code == 200
            server.wait_until(lambda _: sum(len(p.read_text().splitlines()) for p in storage.glob("predictions/*/*.jsonl")) == len(paths), f"logged the {name} images")
            result = materialize_graph(tmp_path / "dagster", selection=dg.AssetSelection.assets(production_drift), partition_key=day)
            (check,) = result.get_asset_check_evaluations()
            verdicts[name] = check
            report = Path(check.metadata["report"].value)
            assert report == storage / "drift" / f"date={day}" / "report.html"
            reports[name] = report.read_text()  # the next set's report replaces it
    finally:
        server.stop()
    real, darkened = verdicts["real"], verdicts["darkened"]
    assert real.passed, real.description
    assert real.metadata["samples"].value == len(paths)
    version = smoke_champion["version"]
    served = real.metadata["probability_tests"].value[version]
    assert served["drifted"] is False and served["samples"] == len(paths), served
    assert served["reference_samples"] >= MIN_DRIFT_SAMPLES  # the smoke champion's validation outputs, from its run
    assert f"probabilities of version {version} did not drift" in real.description
    assert darkened.metadata["probability_tests"].value[version]["drifted"] is not None
    assert not darkened.passed and darkened.severity == dg.AssetCheckSeverity.WARN
    drifted = darkened.metadata["drifted_statistics"].value
    assert {"channel_mean_r", "channel_mean_g", "channel_mean_b"} <= set(drifted), darkened.description
    tests = darkened.metadata["tests"].value
    assert tests["channel_mean_r"]["production_median"] < 0.6 * tests["channel_mean_r"]["reference_median"]
    for name, html in reports.items():
        _assert_is_evidently_report(html, version)
    assert "Data drift detected" not in reports["real"] and "Data drift detected" in reports["darkened"]  # the check's own computation

    shutil.rmtree(storage / "drift")
    (storage / "drift").write_text("a file where the reports' folder belongs")
    failed = materialize_graph(tmp_path / "dagster", selection=dg.AssetSelection.assets(production_drift), partition_key=day, raise_on_error=False)
    assert not failed.success
    error = failed.failure_data_for_node("production_drift").error
    assert f"writing the drift report {storage / 'drift' / f'date={day}' / 'report.html'} failed" in error.to_string(), error.to_string()
