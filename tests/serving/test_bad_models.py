"""Bad models never answer, on real servers: a model whose outputs are not probabilities fails its
warm-up, a NaN at run time answers 503 without a label, and a replica that cannot load MODEL_URI
serves the last version it loaded (remembered in its state folder) and says so, or stays unready.

The models are real Keras models in MLflow folders (tests/serving/slow_model.py): one answers NaN
for an all-grey image, the other for every image.
"""

import json

import httpx
import pytest
from tests.serving.serving_support import Serving, encode
from tests.serving.slow_model import GREY, plain_png, save_slow_model

INFER = "/v2/models/skin-cancer-classifier/infer"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("bad-models")
    return {"good": save_slow_model(folder / "good"), "always NaN": save_slow_model(folder / "nan", always_nan=True)}


def _serving(work, model_uri, state) -> Serving:
    return Serving(work, {"MODEL_URI": str(model_uri), "SKIN_CANCER_STATE": str(state), "SERVING_LOAD_RETRY_MAX_S": "1"}, launcher="tests.serving.slow_model")


def test_a_nan_at_run_time_answers_503_not_a_label(tmp_path, models, lesion):
    server = _serving(tmp_path, models["good"], tmp_path / "state")
    try:
        server.wait_until(lambda c: c.get("/ready").status_code == 200, "became ready")
        with httpx.Client(base_url=server.url, timeout=30) as client:
            grey = client.post("/predict", files={"file": ("grey.png", plain_png(GREY), "image/png")})
            v2 = client.post(INFER, json={"inputs": [{"name": "image_pixels", "datatype": "UINT8", "shape": [1, 4, 4, 3], "data": [GREY] * 48}]})
            fine = client.post("/predict", files={"file": ("lesion.png", encode(lesion, "PNG"), "image/png")})
    finally:
        server.stop()
    assert grey.status_code == 503 and "not probabilities" in grey.json()["detail"], grey.text
    assert "predictions" not in grey.json() and "benign" not in grey.text and "malignant" not in grey.text
    assert v2.status_code == 503 and "not probabilities" in v2.json()["error"], v2.text
    assert fine.status_code == 200, fine.text
    remembered = json.loads((tmp_path / "state" / "serving" / "last_model.json").read_text())
    assert remembered["source_uri"] == str(models["good"].resolve())


def test_a_model_that_fails_its_warm_up_leaves_a_replica_that_never_loaded_one_unready(tmp_path, models):
    server = _serving(tmp_path, models["always NaN"], tmp_path / "state")
    try:
        reason = server.wait_until(lambda c: "could not load" in (r := c.get("/ready").json().get("reason", "")) and r, "said why")
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/ready").status_code == 503
            assert client.get("/model").status_code == 503
    finally:
        server.stop()
    assert "not finite probabilities" in reason


def test_a_replica_that_cannot_load_model_uri_serves_the_last_version_it_loaded(tmp_path, models, lesion):
    """MODEL_URI is a link, as an alias is: it names the good model, then one that fails its warm-up."""
    state, champion = tmp_path / "state", tmp_path / "champion"
    champion.symlink_to(models["good"], target_is_directory=True)
    first = _serving(tmp_path / "first", champion, state)
    first.wait_until(lambda c: c.get("/ready").status_code == 200, "became ready")
    first.stop()
    champion.unlink()
    champion.symlink_to(models["always NaN"], target_is_directory=True)

    server = _serving(tmp_path / "second", champion, state)
    try:
        ready = server.wait_until(lambda c: (r := c.get("/ready")).status_code == 200 and r.json(), "served the remembered model")
        with httpx.Client(base_url=server.url, timeout=30) as client:
            model = client.get("/model").json()
            predicted = client.post("/predict", files={"file": ("lesion.png", encode(lesion, "PNG"), "image/png")})
    finally:
        server.stop()
    assert str(champion) in ready["fallback"] and "not finite probabilities" in ready["fallback"], ready
    assert model["fallback"] == ready["fallback"]
    assert model["source_uri"] == str(models["good"].resolve()) and model["reload"]["error"]
    assert predicted.status_code == 200, predicted.text
