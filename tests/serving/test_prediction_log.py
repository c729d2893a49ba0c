"""The prediction log and POST /feedback, with real uvicorn processes, a real folder and a real S3 server."""

import base64
import hashlib
import json
import os
import signal
import time

import dagster as dg
import httpx
import numpy as np
import pytest
from skin_cancer_assets.assets.monitoring import production_predictions
from skin_cancer_assets.environment import profile_from_env
from skin_cancer_assets.pipeline_resources import build_resources
from skin_cancer_contract.imaging import resize_images
from tests.resources.s3_support import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from tests.serving.serving_support import DATASET, Serving, champion_serving, metric_delta, metric_samples

FEEDBACK_TOKEN = "feedback-test-token"
BEARER = {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}
RECORD_FIELDS = {
    "prediction_id", "time", "model_name", "model_version", "probability_malignant", "label", "threshold",
    "sha256", "width", "height", "channel_mean", "channel_std", "latency_ms",
}


def _serving(tmp_path_factory, smoke_champion, name: str, **env) -> Serving:
    return champion_serving(
        tmp_path_factory.mktemp(name),
        smoke_champion,
        {"SERVING_FEEDBACK_TOKEN": FEEDBACK_TOKEN, "PREDICTION_LOG_FLUSH_S": "0.2", "AWS_BUCKET": "", **env},
    )


def _s3_env(s3: S3Server, bucket: str) -> dict:
    return {
        "AWS_BUCKET": bucket, "AWS_PREFIX": "monitoring-suite", "AWS_ENDPOINT_URL": s3.endpoint, "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }


@pytest.fixture(scope="module")
def local_serving(tmp_path_factory, smoke_champion):
    server = _serving(tmp_path_factory, smoke_champion, "log-local")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_bucket(s3_server) -> str:
    return s3_server.new_bucket()


@pytest.fixture(scope="module")
def s3_serving(tmp_path_factory, smoke_champion, s3_server, s3_bucket):
    server = _serving(tmp_path_factory, smoke_champion, "log-s3", **_s3_env(s3_server, s3_bucket))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def images() -> list[tuple[str, bytes]]:
    """Three real JPEGs of the test split, of both classes."""
    paths = sorted((DATASET / "test" / "benign").glob("*.jpg"))[:2] + sorted((DATASET / "test" / "malignant").glob("*.jpg"))[:1]
    return [(path.name, path.read_bytes()) for path in paths]


def _predict(client: httpx.Client, images) -> list[dict]:
    response = client.post("/predict", files=[("file", (name, data, "image/jpeg")) for name, data in images])
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def _infer_files(client: httpx.Client, images) -> dict:
    tensor = {"name": "image_files", "datatype": "BYTES", "shape": [len(images)], "data": [base64.b64encode(d).decode() for _, d in images]}
    response = client.post("/v2/models/skin-cancer-classifier/infer", json={"inputs": [tensor]})
    assert response.status_code == 200, response.text
    return response.json()


def _feedback(client: httpx.Client, prediction_id: str, diagnosis: str, token: str | None = FEEDBACK_TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/feedback", json={"prediction_id": prediction_id, "diagnosis": diagnosis}, headers=headers)


def _records(files: dict[str, bytes], prediction_ids) -> list[dict]:
    """The stored records of these predictions (the module's servers also hold other tests' records)."""
    records = [json.loads(line) for data in files.values() for line in data.decode().splitlines()]
    return [record for record in records if record["prediction_id"] in prediction_ids]


def _wait_for(read, wanted: int, what: str, timeout: float = 30.0) -> list[dict]:
    """Poll `read()` (the records stored so far) until it holds `wanted` records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = read()
        if len(records) >= wanted:
            return records
        time.sleep(0.2)
    raise AssertionError(f"{what}: {len(read())} of {wanted} records stored within {timeout:.0f}s")


def _check_traffic_lands(server: Serving, images, read_kind) -> None:
    """/predict and V2 predictions and a feedback land, complete, in today's partitions."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        before = metric_samples(client)
        predictions = _predict(client, images)
        inferred = _infer_files(client, images)
        ids = [p["prediction_id"] for p in predictions] + inferred["parameters"]["prediction_ids"]
        assert len(set(ids)) == 2 * len(images)
        accepted = _feedback(client, ids[0], "malignant")
        assert accepted.status_code == 202, accepted.text
        assert accepted.json() == {"status": "queued", "prediction_id": ids[0]}
        day = time.strftime("%Y-%m-%d", time.gmtime())
        records = _wait_for(lambda: _records(read_kind("predictions", day), ids), len(ids), "predictions")
        feedback = _wait_for(lambda: _records(read_kind("feedback", day), ids), 1, "feedback")
        after = metric_samples(client)
    assert sorted(r["prediction_id"] for r in records) == sorted(ids)
    by_id = {r["prediction_id"]: r for r in records}
    for prediction, (_, data) in zip(predictions, images):
        record = by_id[prediction["prediction_id"]]
        assert set(record) == RECORD_FIELDS
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        assert (record["width"], record["height"]) == (224, 224)
        assert record["probability_malignant"] == pytest.approx(prediction["probability_malignant"])
        assert record["label"] == prediction["label"]
        assert record["model_version"] == predictions[0]["model_version"]
        assert 0 < record["latency_ms"] < 60_000
        assert all(0 < m < 255 for m in record["channel_mean"]) and all(0 < s < 128 for s in record["channel_std"])
    for index, record in enumerate(by_id[i] for i in inferred["parameters"]["prediction_ids"]):
        assert record["sha256"] == by_id[predictions[index]["prediction_id"]]["sha256"]
        assert record["channel_mean"] == by_id[predictions[index]["prediction_id"]]["channel_mean"]
    assert feedback == [{"prediction_id": ids[0], "diagnosis": "malignant", "time": feedback[0]["time"]}]
    assert metric_delta(before, after, "serving_log_records_written_total", kind="predictions") == len(ids)
    assert metric_delta(before, after, "serving_log_records_written_total", kind="feedback") == 1


def test_records_and_feedback_land_in_the_state_folder(local_serving, images, tmp_path_factory):
    storage = local_serving.service.log_path.parent / "state" / "storage"

    def read_kind(kind: str, day: str) -> dict[str, bytes]:
        folder = storage / kind / f"date={day}"
        return {p.name: p.read_bytes() for p in sorted(folder.glob("*.jsonl"))} if folder.is_dir() else {}

    _check_traffic_lands(local_serving, images, read_kind)
    assert not list(storage.rglob("*.partial")), "a partly written file was left behind"


def test_records_and_feedback_land_in_the_bucket(s3_serving, s3_server, s3_bucket, images):
    s3 = s3_server.client()

    def read_kind(kind: str, day: str) -> dict[str, bytes]:
        listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix=f"monitoring-suite/{kind}/date={day}/").get("Contents", [])
        return {o["Key"]: s3.get_object(Bucket=s3_bucket, Key=o["Key"])["Body"].read() for o in listed}

    _check_traffic_lands(s3_serving, images, read_kind)


def test_v2_pixels_are_logged_with_their_own_size(local_serving):
    pixels = np.random.default_rng(0).integers(0, 256, (1, 30, 40, 3), dtype=np.uint8)
    tensor = {"name": "image_pixels", "datatype": "UINT8", "shape": list(pixels.shape), "data": pixels.ravel().tolist()}
    storage = local_serving.service.log_path.parent / "state" / "storage" / "predictions"
    with httpx.Client(base_url=local_serving.url, timeout=60) as client:
        model_input = resize_images(pixels, client.get("/model").json()["image_size"])
        answer = client.post("/v2/models/skin-cancer-classifier/infer", json={"inputs": [tensor]}).json()
    (prediction_id,) = answer["parameters"]["prediction_ids"]

    def stored():
        return _records({p.name: p.read_bytes() for p in storage.rglob("*.jsonl")}, {prediction_id})

    (record,) = _wait_for(stored, 1, "the V2 pixels prediction")
    assert (record["width"], record["height"]) == (40, 30)
    assert record["sha256"] == hashlib.sha256(pixels[0].tobytes()).hexdigest()
    sample = model_input[0, ::4, ::4].reshape(-1, 3)  # the statistics are of what the model sees
    assert record["channel_mean"] == pytest.approx(sample.mean(axis=0), abs=0.01)
    assert record["channel_std"] == pytest.approx(sample.std(axis=0), abs=0.01)


@pytest.mark.parametrize(
    ("token", "diagnosis", "status"),
    [("wrong-token", "benign", 401), (None, "benign", 401), (FEEDBACK_TOKEN, "melanoma", 422), ("wrong-token", "melanoma", 401)],
)
def test_feedback_refuses_wrong_tokens_and_unknown_diagnoses(local_serving, token, diagnosis, status):
    with httpx.Client(base_url=local_serving.url, timeout=30) as client:
        response = _feedback(client, "0123abcd", diagnosis, token)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_feedback_is_disabled_without_a_token(client):
    """The session's server has no SERVING_FEEDBACK_TOKEN."""
    response = _feedback(client, "0123abcd", "benign")
    assert response.status_code == 403
    assert "SERVING_FEEDBACK_TOKEN" in response.json()["detail"]


def test_storage_stopped_mid_traffic_fails_no_request(tmp_path_factory, smoke_champion, images, monkeypatch):
    """A dedicated S3 server dies under traffic: every request still answers 200; the lost records are
    counted, and once the storage is back, the day's `production_predictions` reports them."""
    s3 = S3Server(tmp_path_factory.mktemp("doomed-s3"))
    bucket = s3.new_bucket()
    server = _serving(tmp_path_factory, smoke_champion, "log-doomed", PREDICTION_LOG_CAPACITY="4", **_s3_env(s3, bucket))
    day = time.strftime("%Y-%m-%d", time.gmtime())
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            before = metric_samples(client)
            sent = len(_predict(client, images))
            _wait_for(lambda: [None] * int(metric_delta(before, metric_samples(client), "serving_log_records_written_total", kind="predictions")), sent, "before the outage")
            s3.stop()
            many = images * 4  # 12 images in one request: more than the queue holds
            for _ in range(3):
                sent += len(_predict(client, images)) + len(_predict(client, many))
            assert _feedback(client, _predict(client, images[:1])[0]["prediction_id"], "benign").status_code == 202
            sent += 1
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                after = metric_samples(client)
                written = metric_delta(before, after, "serving_log_records_written_total", kind="predictions")
                full = metric_delta(before, after, "serving_log_records_dropped_total", kind="predictions", reason="queue_full")
                failed = metric_delta(before, after, "serving_log_records_dropped_total", kind="predictions", reason="storage_error")
                if written + full + failed == sent:
                    break
                time.sleep(0.5)
            s3.start()  # moto kept nothing: the bucket is new and empty, the drop counts not yet written
            s3.client().create_bucket(Bucket=bucket)
            drops = f"monitoring-suite/drops/date={day}/"
            _wait_for(lambda: s3.client().list_objects_v2(Bucket=bucket, Prefix=drops).get("Contents", []), 1, "the drop counts")
        server.stop()  # flushes what is left
        figures = _production_predictions(day, _s3_env(s3, bucket), monkeypatch)
    finally:
        server.stop()
        s3.stop()
    assert written == len(images), "records were written while the storage was down"
    assert full > 0 and failed > 0, (full, failed)
    assert written + full + failed == sent
    assert "dropped" in server.service.log_tail(20000) and "queue is full" in server.service.log_tail(20000)
    assert figures["dropped_records"] == full + failed
    assert figures["dropped_by_reason"] == {"queue_full": full, "storage_error": failed}
    assert figures["count"] == 0  # what was written before the outage went with moto's memory


def _production_predictions(day: str, env: dict, monkeypatch) -> dict:
    """The metadata of `production_predictions` for `day`, with the storage of `env`."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = dg.materialize(
        [production_predictions], partition_key=day, resources={"production_log": build_resources(profile_from_env())["production_log"]}
    )
    return {name: value.value for name, value in result.asset_materializations_for_node("production_predictions")[0].metadata.items()}


def test_recent_predictions_show_what_this_process_answered(local_serving, images):
    """GET /monitoring/recent, which the app's Production view plots (with the feedback token, as
    serving has no SERVING_MONITORING_TOKEN)."""
    with httpx.Client(base_url=local_serving.url, timeout=60, headers=BEARER) as client:
        before = client.get("/monitoring/recent").json()
        predictions = _predict(client, images)
        after = client.get("/monitoring/recent").json()
        local_serving.wait_until(
            lambda c: c.get("/monitoring/recent", headers=BEARER).json()["written"] == after["predictions"], "wrote every record"
        )
    assert after["predictions"] == before["predictions"] + len(images)
    assert after["started_at"] == before["started_at"] and after["dropped"] == 0
    recent = after["recent"][-len(images):]
    assert [r["probability_malignant"] for r in recent] == pytest.approx([p["probability_malignant"] for p in predictions])
    assert [r["label"] for r in recent] == [p["label"] for p in predictions]
    assert all(r["model_version"] == p["model_version"] and r["latency_ms"] > 0 for r, p in zip(recent, predictions))
    assert set(recent[0]) == {"time", "model_version", "probability_malignant", "label", "latency_ms"}  # no image facts


def test_with_the_log_off_serving_answers_and_records_nothing(tmp_path_factory, smoke_champion, images):
    """PREDICTION_LOG=off: predictions are answered (with ids), nothing reaches the storage, and the
    routes that need the log say it is off."""
    server = _serving(tmp_path_factory, smoke_champion, "log-off", PREDICTION_LOG="off")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            predictions = _predict(client, images)
            infer = client.post(
                "/v2/models/skin-cancer-classifier/infer",
                json={"inputs": [{"name": "image_pixels", "datatype": "UINT8", "shape": [1, 2, 2, 3], "data": [0] * 12}]},
            )
            refused = [_feedback(client, predictions[0]["prediction_id"], "benign", FEEDBACK_TOKEN), client.get("/monitoring/recent", headers=BEARER)]
            time.sleep(1)  # five flush intervals: a running log would have written by now
            written = metric_samples(client)
    finally:
        server.stop()
    assert len({p["prediction_id"] for p in predictions}) == len(images)
    assert infer.status_code == 200, infer.text
    for response in refused:
        assert response.status_code == 403 and "PREDICTION_LOG=off" in response.json()["detail"], response.text
    assert not (server.service.log_path.parent / "state" / "storage").exists()
    counted = {name for (name, _), value in written.items() if name.endswith("_total") and value}
    assert not {"serving_log_records_written_total", "serving_log_records_dropped_total"} & counted


def _stored(storage, kind: str) -> list[dict]:
    return [json.loads(line) for path in sorted(storage.glob(f"{kind}/date=*/*.jsonl")) for line in path.read_text().splitlines()]


def test_feedback_for_a_prediction_serving_did_not_issue_is_refused_404(local_serving, images):
    """Serving signs its prediction ids (SERVING_PREDICTION_ID_KEY, here the feedback token): an id
    it did not sign is refused, whatever its form."""
    with httpx.Client(base_url=local_serving.url, timeout=60) as client:
        issued = _predict(client, images[:1])[0]["prediction_id"]
        refused = {
            id_: _feedback(client, id_, "benign")
            for id_ in ("0123abcd", issued[:32], issued[:32] + "0" * 16, "f" * 32 + issued[32:], issued + "00")
        }
        accepted = _feedback(client, issued, "benign")
    assert {id_: r.status_code for id_, r in refused.items()} == dict.fromkeys(refused, 404)
    assert all("unknown prediction id" in r.json()["detail"] for r in refused.values())
    assert accepted.status_code == 202, accepted.text


def test_repeated_confirmations_are_all_kept(local_serving, images):
    storage = local_serving.service.log_path.parent / "state" / "storage"
    with httpx.Client(base_url=local_serving.url, timeout=60) as client:
        issued = _predict(client, images[:1])[0]["prediction_id"]
        answers = [_feedback(client, issued, diagnosis).json()["status"] for diagnosis in ("benign", "malignant", "malignant")]
    stored = _wait_for(lambda: [r for r in _stored(storage, "feedback") if r["prediction_id"] == issued], 3, "the confirmations")
    assert answers == ["queued"] * 3
    assert [r["diagnosis"] for r in stored] == ["benign", "malignant", "malignant"]


def test_a_confirmation_the_full_queue_drops_is_answered_dropped(tmp_path_factory, smoke_champion, images):
    """A queue of one record, never flushed during the test: the prediction fills it, so the
    confirmation is dropped, and serving says so (and counts it)."""
    server = _serving(tmp_path_factory, smoke_champion, "log-full", PREDICTION_LOG_CAPACITY="1", PREDICTION_LOG_FLUSH_S="3600")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            before = metric_samples(client)
            issued = _predict(client, images[:2])[0]["prediction_id"]
            server.wait_until(  # the second record found the queue full: it is full now
                lambda c: metric_delta(before, metric_samples(c), "serving_log_records_dropped_total", kind="predictions", reason="queue_full") == 1,
                "dropped the second prediction record",
            )
            answer = _feedback(client, issued, "malignant")
            after = metric_samples(client)
    finally:
        server.stop()
    assert answer.status_code == 202 and answer.json() == {"status": "dropped", "prediction_id": issued}
    assert metric_delta(before, after, "serving_log_records_dropped_total", kind="feedback", reason="queue_full") == 1


def test_sigterm_stores_every_waiting_record(tmp_path_factory, smoke_champion, images):
    """The flush interval is an hour and no batch fills: only the log's stop at shutdown writes them."""
    server = _serving(tmp_path_factory, smoke_champion, "log-stop", PREDICTION_LOG_FLUSH_S="3600")
    storage = server.service.log_path.parent / "state" / "storage"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        ids = [p["prediction_id"] for _ in range(3) for p in _predict(client, images)]
    assert _stored(storage, "predictions") == []
    server.stop()  # SIGTERM
    assert "Application shutdown complete" in server.service.log_tail()
    assert sorted(r["prediction_id"] for r in _stored(storage, "predictions")) == sorted(ids)


def test_sigterm_drains_several_waiting_batches(tmp_path_factory, smoke_champion, images):
    """Batches of 2 into a bucket whose server is paused (SIGSTOP): the writer hangs on the first
    batch while three more wait; serving gets SIGTERM, the bucket resumes once the log is stopping,
    and all are stored."""
    s3 = S3Server(tmp_path_factory.mktemp("paused-s3"))
    bucket = s3.new_bucket()
    server = _serving(tmp_path_factory, smoke_champion, "log-drain", PREDICTION_LOG_FLUSH_S="3600", PREDICTION_LOG_BATCH="2", **_s3_env(s3, bucket))
    moto = s3.service.process.pid
    try:
        os.killpg(moto, signal.SIGSTOP)
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                ids = [p["prediction_id"] for _ in range(4) for p in _predict(client, images[:2])]
            os.killpg(server.service.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 20  # resume the bucket only once the log is stopping
            while "prediction log stopping" not in server.service.log_tail() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            os.killpg(moto, signal.SIGCONT)
        server.service.process.wait(30)
        listed = s3.client().list_objects_v2(Bucket=bucket, Prefix="monitoring-suite/predictions/").get("Contents", [])
        stored = [
            json.loads(line)["prediction_id"]
            for o in listed
            for line in s3.client().get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode().splitlines()
        ]
    finally:
        server.stop()
        s3.stop()
    assert sorted(stored) == sorted(ids), server.service.log_tail()
    assert len(listed) == 4, "one file per batch of 2"
