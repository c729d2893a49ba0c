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


def _logging_serving(smoke_champion, work: Path, **log_env):
    """Serving with a feedback token; its prediction log lands in its own state folder."""
    return start_serving(
        work,
        {
            "MODEL_URI": smoke_champion["model_uri"],
            "MLFLOW_TRACKING_URI": smoke_champion["tracking_uri"],
            "SKIN_CANCER_STATE": str(work / "state"),
            "SERVING_FEEDBACK_TOKEN": TOKEN,
            "AWS_BUCKET": "",
            **log_env,
        },
        ready=True,
    )


@pytest.fixture(scope="module")
def logging_serving(smoke_champion, tmp_path_factory):
    work = tmp_path_factory.mktemp("confirm-serving")
    service, url = _logging_serving(smoke_champion, work, PREDICTION_LOG_FLUSH_S="0.2")
    yield url, work / "state" / "storage"
    service.stop()


@pytest.fixture
def full_log_serving(smoke_champion, tmp_path):
    """Serving whose prediction log holds one record and is not flushed during the test: the
    prediction's record fills it, so a confirmation is dropped."""
    service, url = _logging_serving(smoke_champion, tmp_path, PREDICTION_LOG_CAPACITY="1", PREDICTION_LOG_FLUSH_S="3600")
    yield url
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


def test_a_dropped_confirmation_is_not_called_recorded(monkeypatch, full_log_serving, benign_image):
    app = predicted_app(monkeypatch, full_log_serving, benign_image, TOKEN)
    (outcome,) = app.session_state["outcomes"]
    prediction_id = outcome["row"]["prediction_id"]
    app.button(key=f"confirm-{prediction_id}").click().run()
    assert not app.main.success, [item.value for item in app.main.success]
    assert [item.value for item in app.main.warning if item.value.startswith("Not recorded")], [item.value for item in app.main.warning]
