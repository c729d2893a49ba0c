"""The serving API against a real uvicorn holding the smoke champion of a real MLflow server."""

from datetime import datetime

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image
from skin_cancer_contract.api import DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_REQUEST_PIXELS
from tests.serving.serving_support import ADMIN_TOKEN, MAX_UPLOAD_MB, encode, metric_delta, metric_samples

TEST_METRICS = {"test_accuracy", "test_roc_auc", "test_recall_malignant", "test_specificity", "test_precision"}


@pytest.fixture(scope="module")
def version_tags(smoke_champion) -> dict:
    client = MlflowClient(smoke_champion["tracking_uri"])
    return client.get_model_version(smoke_champion["model_name"], smoke_champion["version"]).tags


def test_health_ready_and_info(client, smoke_champion):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "version": smoke_champion["version"]}
    info = client.get("/info").json()
    assert info["name"] == "skin-cancer-classifier"
    assert info["version"] == smoke_champion["version"]
    assert info["limits"] == {
        "max_upload_mb": MAX_UPLOAD_MB,
        "max_files": 64,
        "max_image_pixels": DEFAULT_MAX_IMAGE_PIXELS,
        "max_request_pixels": DEFAULT_MAX_REQUEST_PIXELS,
    }


def test_model_reports_the_registered_version(client, smoke_champion, version_tags):
    model = client.get("/model").json()
    assert model["name"] == smoke_champion["model_name"]
    assert model["version"] == smoke_champion["version"]
    assert model["model_class"] == version_tags["model_class"]
    assert model["threshold"] == pytest.approx(float(version_tags["threshold"]))
    assert model["accuracy_threshold"] == pytest.approx(float(version_tags["accuracy_threshold"]))
    registered = MlflowClient(smoke_champion["tracking_uri"]).get_model_version(model["name"], model["version"])
    assert model["description"] == registered.description and "## Intended use" in model["description"]  # the model card
    assert model["image_size"] == int(version_tags["image_size"])
    assert TEST_METRICS <= set(model["metrics"])
    assert model["run_id"]
    assert model["model_uri"] == smoke_champion["model_uri"]
    assert model["source_uri"] == f"models:/{smoke_champion['model_name']}/{smoke_champion['version']}"
    assert datetime.fromisoformat(model["loaded_at"]).tzinfo is not None
    assert model["reload"]["state"] == "idle" and model["reload"]["error"] is None


def test_predict_several_images_in_order(client, jpeg, lesion, smoke_champion, version_tags):
    files = [("file", ("first.jpg", jpeg, "image/jpeg")), ("file", ("second.png", encode(lesion, "PNG"), "image/png"))]
    response = client.post("/predict", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["version"] == smoke_champion["version"]
    assert body["model"]["model_class"] == version_tags["model_class"]
    assert [p["filename"] for p in body["predictions"]] == ["first.jpg", "second.png"]
    threshold = float(version_tags["threshold"])
    for prediction in body["predictions"]:
        assert 0.0 <= prediction["probability_malignant"] <= 1.0
        assert prediction["threshold"] == pytest.approx(threshold)
        expected = "malignant" if prediction["probability_malignant"] >= threshold else "benign"
        assert prediction["label"] == expected
        assert prediction["model_version"] == smoke_champion["version"]


@pytest.mark.parametrize(
    ("filename", "make"),
    [
        ("rgb.png", lambda image: encode(image, "PNG")),
        ("rgba.png", lambda image: encode(image.convert("RGBA"), "PNG")),
        ("gray.jpg", lambda image: encode(image.convert("L"), "JPEG")),
        ("palette.png", lambda image: encode(image.convert("P"), "PNG")),
        ("odd-size.jpg", lambda image: encode(image.resize((301, 157)), "JPEG")),
        ("large.jpg", lambda image: encode(image.resize((1600, 1200)), "JPEG")),
        ("tiny.png", lambda image: encode(image.resize((7, 5)), "PNG")),
    ],
)
def test_predict_accepts_any_size_and_colour_mode(client, lesion, filename, make):
    response = client.post("/predict", files={"file": (filename, make(lesion), "application/octet-stream")})
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["filename"] == filename
    assert 0.0 <= prediction["probability_malignant"] <= 1.0


def _noise_png() -> bytes:
    """A real PNG larger than the test server's MAX_UPLOAD_MB (noise does not compress)."""
    side = int((MAX_UPLOAD_MB * 1024 * 1024 / 3) ** 0.5) + 200
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "PNG")


BAD_UPLOADS = {
    "not an image": ({"files": {"file": ("notes.jpg", b"these are words, not pixels", "image/jpeg")}}, 415, "notes.jpg"),
    "damaged header": ({"files": {"file": ("head.png", b"\x89PNG\r\n\x1a\n", "image/png")}}, 400, "head.png"),
    "truncated jpeg": ({"files": {"file": ("cut.jpg", "TRUNCATE", "image/jpeg")}}, 400, "cut.jpg"),
    "empty file": ({"files": {"file": ("empty.jpg", b"", "image/jpeg")}}, 400, "empty.jpg"),
    "wrong part content type": ({"files": {"file": ("scan.pdf", b"%PDF-1.4", "application/pdf")}}, 415, "scan.pdf"),
    "wrong request content type": ({"json": {"file": "lesion.jpg"}}, 415, "multipart/form-data"),
    "empty body": ({"content": b"", "headers": {"content-type": "image/jpeg"}}, 415, "multipart/form-data"),
    "missing field": ({"files": {"image": ("lesion.jpg", "JPEG", "image/jpeg")}}, 422, "'file'"),
    "text instead of a file": ({"data": {"file": "lesion.jpg"}, "files": {"other": ("x", b"x")}}, 422, "'file'"),
    "over MAX_UPLOAD_MB": ({"files": {"file": ("huge.png", "NOISE", "image/png")}}, 413, "MAX_UPLOAD_MB"),
    "second file bad": (
        {"files": [("file", ("good.jpg", "JPEG", "image/jpeg")), ("file", ("bad.jpg", b"\xff\xd8\xff", "image/jpeg"))]},
        400,
        "bad.jpg",
    ),
}


def _fill(value, jpeg: bytes):
    """Replace placeholders with real bytes (kept out of the parameter ids)."""
    stand_ins = {"JPEG": lambda: jpeg, "TRUNCATE": lambda: jpeg[: len(jpeg) // 2], "NOISE": _noise_png}
    if isinstance(value, str) and value in stand_ins:
        return stand_ins[value]()
    if isinstance(value, dict):
        return {key: _fill(item, jpeg) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_fill(item, jpeg) for item in value)
    return value


@pytest.mark.parametrize(("request_kwargs", "status", "named"), BAD_UPLOADS.values(), ids=BAD_UPLOADS.keys())
def test_bad_input_is_a_clear_client_error(client, jpeg, request_kwargs, status, named):
    response = client.post("/predict", **_fill(request_kwargs, jpeg))
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and named in detail
    after = client.post("/predict", files={"file": ("lesion.jpg", jpeg, "image/jpeg")})
    assert after.status_code == 200, "serving must keep answering after a bad request"


def test_metrics_count_requests_latency_and_version(client, jpeg, smoke_champion):
    before = metric_samples(client)
    client.post("/predict", files={"file": ("lesion.jpg", jpeg, "image/jpeg")})
    client.post("/predict", files=[("file", ("a.jpg", jpeg, "image/jpeg")), ("file", ("b.jpg", jpeg, "image/jpeg"))])
    client.post("/predict", files={"file": ("empty.jpg", b"", "image/jpeg")})
    client.request("PURGE", "/predict")
    client.get("/no/such/path/12345")
    response = client.get("/metrics")
    after = metric_samples(client)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")

    assert metric_delta(before, after, "serving_requests_total", handler="/predict", status="200") == 2
    assert metric_delta(before, after, "serving_requests_total", handler="/predict", status="400") == 1
    assert metric_delta(before, after, "serving_requests_total", handler="/predict", status="405") == 1
    assert metric_delta(before, after, "serving_requests_total", handler="none", status="404") == 1
    assert metric_delta(before, after, "serving_request_duration_seconds_count", handler="/predict") == 4
    assert metric_delta(before, after, "serving_request_duration_seconds_bucket", handler="/predict", le="+Inf") == 4
    assert metric_delta(before, after, "serving_batch_size_count") == 2
    assert metric_delta(before, after, "serving_batch_size_sum") == 3
    request_labels = [dict(labels) for name, labels in after if name == "serving_requests_total"]
    assert all(set(labels) == {"handler", "status"} for labels in request_labels), "no label the client chooses"
    assert "/no/such/path/12345" not in {labels["handler"] for labels in request_labels}
    served = [dict(labels)["version"] for (name, labels), v in after.items() if name == "serving_model_info" and v == 1]
    assert served == [smoke_champion["version"]]


def test_openapi_docs(client):
    assert "swagger" in client.get("/docs").text.lower()
    spec = client.get("/openapi.json").json()
    assert {"/health", "/ready", "/info", "/model", "/predict", "/metrics", "/admin/reload"} <= set(spec["paths"])
    assert {"/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/infer"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {ADMIN_TOKEN}"])
def test_reload_needs_the_admin_token(client, authorization):
    before = client.get("/model").json()["reload"]
    headers = {"Authorization": authorization} if authorization else {}
    response = client.post("/admin/reload", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "SERVING_ADMIN_TOKEN" in response.json()["detail"]
    assert client.get("/model").json()["reload"] == before, "a refused reload must not start a load"

