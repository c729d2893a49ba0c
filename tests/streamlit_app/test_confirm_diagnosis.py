"""The app's "Confirm diagnosis", against a real serving process whose prediction log writes to a folder."""

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from tests.streamlit_app.app_services import start_serving

APP = Path(__file__).resolve().parents[2] / "streamlit_app" / "app.py"
TOKEN = "app-feedback-token"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def logging_serving(smoke_champion, tmp_path_factory):
    """Serving with a feedback token; its prediction log lands in its own state folder."""
    work = tmp_path_factory.mktemp("confirm-serving")
    service, url = start_serving(
        work,
        {
            "MODEL_URI": smoke_champion["model_uri"],
            "MLFLOW_TRACKING_URI": smoke_champion["tracking_uri"],
            "SKIN_CANCER_STATE": str(work / "state"),
            "SERVING_FEEDBACK_TOKEN": TOKEN,
            "PREDICTION_LOG_FLUSH_S": "0.2",
            "AWS_BUCKET": "",
        },
        ready=True,
    )
    yield url, work / "state" / "storage"
    service.stop()


def predicted_app(monkeypatch, url: str, image: Path, token: str | None) -> AppTest:
    monkeypatch.setenv("SERVING_URL", url)
    if token:
        monkeypatch.setenv("SERVING_FEEDBACK_TOKEN", token)
    else:
        monkeypatch.delenv("SERVING_FEEDBACK_TOKEN", raising=False)
    app = AppTest.from_file(str(APP), default_timeout=180)
    app.run()
    app.file_uploader[0].set_value([(image.name, image.read_bytes(), "image/jpeg")]).run()
    next(button for button in app.button if button.label == "Predict").click().run()
    assert not app.exception and not app.error, [item.value for item in app.error]
    return app


def test_a_confirmed_diagnosis_reaches_the_prediction_log(monkeypatch, logging_serving, benign_image):
    url, storage = logging_serving
    app = predicted_app(monkeypatch, url, benign_image, TOKEN)
    (outcome,) = app.session_state["outcomes"]
    prediction_id = outcome["row"]["prediction_id"]
    app.radio(key=f"diagnosis-{prediction_id}").set_value("malignant").run()
    app.button(key=f"confirm-{prediction_id}").click().run()
    assert [item.value for item in app.main.success] == ["Recorded: malignant"], [item.value for item in app.error]

    deadline, stored = time.monotonic() + 30, []
    while time.monotonic() < deadline and not stored:
        lines = [json.loads(line) for path in storage.glob("feedback/date=*/*.jsonl") for line in path.read_text().splitlines()]
        stored = [record for record in lines if record["prediction_id"] == prediction_id]
        time.sleep(0.2)
    assert [record["diagnosis"] for record in stored] == ["malignant"]


def test_without_the_token_the_app_says_how_to_turn_it_on(monkeypatch, logging_serving, benign_image):
    app = predicted_app(monkeypatch, logging_serving[0], benign_image, None)
    assert any("SERVING_FEEDBACK_TOKEN" in item.value for item in app.caption)
    assert not [button for button in app.button if button.label == "Confirm diagnosis"]
