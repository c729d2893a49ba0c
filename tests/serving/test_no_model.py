"""Serving without a loadable model: it starts, says why it is not ready, and a reload fixes it."""

import httpx
import mlflow
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
            assert ready["ready"] is False and str(missing) in ready["reason"]
            predict = client.post("/predict", files={"file": ("lesion.jpg", jpeg, "image/jpeg")})
            assert predict.status_code == 503
            assert "no model loaded" in predict.json()["detail"]
            model = client.get("/model")
            assert model.status_code == 503
            assert "no model loaded" in model.json()["detail"]
            assert model.json()["reload"]["state"] == "failed" and model.json()["reload"]["error"]
            assert client.get("/info").json()["version"] is None
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
