"""Serving without a loadable model: it starts, says why it is not ready (without internal
addresses or paths), retries by itself until a champion exists, and a reload fixes it at once."""

import uuid

import httpx
import mlflow
from mlflow import MlflowClient
from tests.helpers import copy_version
from tests.serving.serving_support import ADMIN_TOKEN, Serving


def _failed(client: httpx.Client) -> bool:
    response = client.get("/ready")
    return response.status_code == 503 and "could not load" in response.json()["reason"]


def test_no_model_means_not_ready_and_503(tmp_path, jpeg):
    missing = tmp_path / "no-model-here"
    serving = Serving(tmp_path, {"MODEL_URI": str(missing), "SERVING_ADMIN_TOKEN": ""})
    try:
        serving.wait_until(_failed, "reported the failed load")
        with httpx.Client(base_url=serving.url, timeout=30) as client:
            assert client.get("/health").json() == {"status": "ok"}
            ready = client.get("/ready").json()
            assert ready["ready"] is False and "could not load the model" in ready["reason"]
            assert str(tmp_path) not in ready["reason"], "paths go to the log, not to clients"
            predict = client.post("/predict", files={"file": ("lesion.jpg", jpeg, "image/jpeg")})
            assert predict.status_code == 503
            assert "no model loaded" in predict.json()["detail"]
            model = client.get("/model")
            assert model.status_code == 503
            assert "no model loaded" in model.json()["detail"]
            assert model.json()["reload"]["state"] == "failed" and model.json()["reload"]["error"]
            assert str(tmp_path) not in model.text
            assert client.get("/info").json()["version"] is None
            assert client.get("/v2/health/ready").status_code == 503
            assert "no model loaded" in client.get("/v2/models/skin-cancer-classifier").json()["error"]
            refused = client.post("/admin/reload", headers={"Authorization": "Bearer anything"})
            assert refused.status_code == 403
            assert "SERVING_ADMIN_TOKEN" in refused.json()["detail"]
    finally:
        serving.stop()


def test_reload_fixes_a_failed_start_from_a_local_model_folder(smoke_champion, tmp_path, jpeg, monkeypatch):
    folder = tmp_path / "champion-model"
    serving = Serving(
        tmp_path,
        {
            "MODEL_URI": str(folder),
            "MLFLOW_TRACKING_URI": smoke_champion["tracking_uri"],
            "SERVING_ADMIN_TOKEN": ADMIN_TOKEN,
        },
    )
    try:
        serving.wait_until(_failed, "reported the failed load")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", smoke_champion["tracking_uri"])  # also the registry's URI
        mlflow.artifacts.download_artifacts(smoke_champion["model_uri"], dst_path=str(folder))
        with httpx.Client(base_url=serving.url, timeout=60) as client:
            assert client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 202
            serving.wait_until(lambda c: c.get("/ready").status_code == 200, "became ready after the reload")
            model = client.get("/model").json()
            assert model["source_uri"] == str(folder)
            assert model["version"] == smoke_champion["version"], "the folder's registered version is reported"
            assert model["run_id"]
            assert {"test_accuracy", "test_roc_auc"} <= set(model["metrics"])
            predict = client.post("/predict", files={"file": ("lesion.jpg", jpeg, "image/jpeg")})
            assert predict.status_code == 200, predict.text
    finally:
        serving.stop()


def test_a_server_started_before_any_champion_becomes_ready_by_itself(smoke_champion, tmp_path, jpeg):
    """No reload token, so nobody can call /admin/reload: the retries alone must find the champion."""
    name = f"late-champion-{uuid.uuid4().hex[:8]}"
    serving = Serving(
        tmp_path,
        {
            "MODEL_URI": f"models:/{name}@champion",
            "MLFLOW_TRACKING_URI": smoke_champion["tracking_uri"],
            "SERVING_ADMIN_TOKEN": "",
            "SERVING_LOAD_RETRY_MAX_S": "2",
        },
    )
    try:
        reason = serving.wait_until(
            lambda c: "could not load" in (r := c.get("/ready").json().get("reason", "")) and r, "said why it is not ready"
        )
        assert smoke_champion["tracking_uri"].removeprefix("http://") not in reason, "internal addresses go to the log"

        registry = MlflowClient(smoke_champion["tracking_uri"])
        champion = registry.get_model_version(smoke_champion["model_name"], smoke_champion["version"])
        registry.create_registered_model(name)
        created = copy_version(registry, champion, name)
        registry.set_registered_model_alias(name, "champion", created.version)

        serving.wait_until(lambda c: c.get("/ready").status_code == 200, "became ready once a champion existed", timeout=60)
        with httpx.Client(base_url=serving.url, timeout=60) as client:
            assert client.get("/model").json()["version"] == str(created.version)
            predict = client.post("/predict", files={"file": ("lesion.jpg", jpeg, "image/jpeg")})
            assert predict.status_code == 200, predict.text
    finally:
        serving.stop()
