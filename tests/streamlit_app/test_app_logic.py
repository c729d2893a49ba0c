"""The app's logic through Streamlit's AppTest, against real serving processes."""

import csv
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from serving.explain import IMAGES_PER_EXPLANATION
from skin_cancer_contract.api import EXPLAIN_ROUTE
from streamlit.testing.v1 import AppTest
from tests.serving.serving_support import metric_delta, metric_samples
from tests.streamlit_app.app_services import SERVING_LIMITS

from streamlit_app.monitoring import asset_links, recent_figures
from streamlit_app.results import COLUMNS, to_csv, to_json

APP = Path(__file__).resolve().parents[2] / "streamlit_app" / "app.py"

pytestmark = pytest.mark.slow


def run_app(monkeypatch, serving: str) -> AppTest:
    monkeypatch.setenv("SERVING_URL", serving)
    app = AppTest.from_file(str(APP), default_timeout=180)
    app.run()
    assert not app.exception, [item.value for item in app.exception]
    return app


def predict_button(app: AppTest):
    return next(button for button in app.button if button.label == "Predict")


def as_png(path: Path) -> bytes:
    buffer = io.BytesIO()
    with Image.open(path) as image:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_shows_disclaimer_and_the_model_serving_holds(monkeypatch, serving_url, smoke_champion):
    app = run_app(monkeypatch, serving_url)
    card = httpx.get(f"{serving_url}/model").json()

    assert "not a medical diagnosis" in app.warning[0].value
    assert [item.value for item in app.sidebar.success] == ["Serving is ready"]
    model_text = "\n".join(item.value for item in app.sidebar.markdown)
    assert f"**{smoke_champion['model_name']}** version **{smoke_champion['version']}**" in model_text
    assert f"class `{card['model_class']}`" in model_text
    for label in ("Accuracy", "ROC AUC", "Recall (malignant)", "Specificity", "Precision"):
        assert f"- {label}: " in model_text
    assert predict_button(app).disabled


def test_predicts_jpeg_and_png_uploads(monkeypatch, serving_url, smoke_champion, benign_image, malignant_image):
    app = run_app(monkeypatch, serving_url)
    app.file_uploader[0].set_value(
        [
            (benign_image.name, benign_image.read_bytes(), "image/jpeg"),
            ("malignant.png", as_png(malignant_image), "image/png"),
        ]
    ).run()
    assert {benign_image.name, "malignant.png"} <= {item.value for item in app.caption}

    predict_button(app).click().run()

    assert not app.exception and not app.error, [item.value for item in app.error]
    rows = [outcome["row"] for outcome in app.session_state["outcomes"]]
    assert [row["filename"] for row in rows] == [benign_image.name, "malignant.png"]
    for row in rows:
        assert 0.0 <= row["probability_malignant"] <= 1.0
        assert row["label"] == ("malignant" if row["probability_malignant"] >= row["threshold"] else "benign")
        assert (row["model_name"], row["model_version"]) == (smoke_champion["model_name"], smoke_champion["version"])

    bars = [bar.text for bar in app.get("progress")]
    assert bars[0] == "Done: 2 image(s)"
    assert [f"Probability of malignant: {row['probability_malignant']:.1%}" for row in rows] == [
        text.split(" (called malignant from")[0] for text in bars[1:]
    ]
    labels = [item.value for item in app.markdown if item.value.startswith("Prediction: ")]
    assert labels == [f"Prediction: :{'red' if row['label'] == 'malignant' else 'green'}[**{row['label']}**]" for row in rows]
    assert [button.label for button in app.download_button] == ["Download JSON", "Download CSV"]
    assert json.loads(to_json(rows)) == rows
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert [list(row) for row in parsed] == [list(COLUMNS)] * 2
    assert [row["label"] for row in parsed] == [row["label"] for row in rows]


def test_rejected_file_gets_a_message_and_the_others_still_predict(monkeypatch, serving_url, benign_image):
    app = run_app(monkeypatch, serving_url)
    app.file_uploader[0].set_value(
        [("broken.png", b"this is not a png", "image/png"), (benign_image.name, benign_image.read_bytes(), "image/jpeg")]
    ).run()
    predict_button(app).click().run()

    assert not app.exception
    errors = [item.value for item in app.error]
    assert len(errors) == 1 and errors[0].startswith("The prediction service rejected broken.png: ")
    outcomes = app.session_state["outcomes"]
    assert "error" in outcomes[0] and outcomes[1]["row"]["filename"] == benign_image.name
    assert "(no preview: not a readable image)" in [item.value for item in app.caption]


def test_serving_down_is_explained(monkeypatch, stopped_serving_url, benign_image):
    app = run_app(monkeypatch, stopped_serving_url)
    expected = f"Cannot reach the prediction service at {stopped_serving_url}"
    assert app.sidebar.error[0].value.startswith(expected)

    app.file_uploader[0].set_value((benign_image.name, benign_image.read_bytes(), "image/jpeg")).run()
    predict_button(app).click().run()

    assert not app.exception
    assert [item.value for item in app.main.error if item.value.startswith(expected)]
    assert "outcomes" not in app.session_state


def test_serving_without_a_model_is_explained(monkeypatch, unready_serving_url, benign_image):
    app = run_app(monkeypatch, unready_serving_url)
    assert app.sidebar.warning[0].value.startswith("Serving is up but not ready: ")

    app.file_uploader[0].set_value((benign_image.name, benign_image.read_bytes(), "image/jpeg")).run()
    predict_button(app).click().run()

    assert not app.exception
    assert [
        item.value
        for item in app.main.error
        if item.value.startswith(f"The prediction service at {unready_serving_url} is up but cannot answer yet")
    ]


def test_several_files_go_in_as_few_requests_as_serving_takes_and_reruns_reuse_the_status(
    monkeypatch, serving_url, benign_image, malignant_image
):
    """Six files, serving's MAX_FILES 4: two requests; and a heat map of each (one /explain each)."""
    with httpx.Client(base_url=serving_url) as serving:
        before = metric_samples(serving)
        app = run_app(monkeypatch, serving_url)
        app.file_uploader[0].set_value(
            [(f"lesion-{i}.jpg", path.read_bytes(), "image/jpeg") for i, path in enumerate([benign_image, malignant_image] * 3)]
        ).run()
        predict_button(app).click().run()
        app.run()
        after = metric_samples(serving)

    assert len(app.session_state["outcomes"]) == 6 and all("row" in outcome for outcome in app.session_state["outcomes"])
    assert metric_delta(before, after, "serving_requests_total", handler="/predict", status="200") == 2
    assert metric_delta(before, after, "serving_requests_total", handler=EXPLAIN_ROUTE, status="200") == 6
    assert metric_delta(before, after, "serving_batch_size_sum") == 6 + 6 * IMAGES_PER_EXPLANATION
    for route in ("/ready", "/model", "/info"):
        asked = metric_delta(before, after, "serving_requests_total", handler=route, status="200")
        assert asked <= 1, f"four runs of the page asked {route} {asked:.0f} times"


def test_the_uploader_takes_no_larger_file_than_serving(monkeypatch, serving_url):
    app = run_app(monkeypatch, serving_url)
    assert app.file_uploader[0].proto.max_upload_size_mb == int(SERVING_LIMITS["MAX_UPLOAD_MB"])


def noise_png(seed: int, side: int = 640) -> bytes:
    """A real PNG of about 1.2 MB (noise does not compress)."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("count", "make", "requests"),
    [(9, lambda index, image: image.read_bytes(), 3), (3, lambda index, image: noise_png(index), 2)],
    ids=["9 files, MAX_FILES 4", "3 files of 1.2 MB, MAX_UPLOAD_MB 3"],
)
def test_uploads_are_split_by_servings_own_limits(monkeypatch, serving_url, benign_image, count, make, requests):
    """request_chunks with more files, or more bytes, than one request of this serving takes."""
    with httpx.Client(base_url=serving_url) as serving:
        before = metric_samples(serving)
        app = run_app(monkeypatch, serving_url)
        app.file_uploader[0].set_value([(f"lesion-{i}.png", make(i, benign_image), "image/png") for i in range(count)]).run()
        predict_button(app).click().run()
        after = metric_samples(serving)
    assert [("row" in outcome) for outcome in app.session_state["outcomes"]] == [True] * count
    assert metric_delta(before, after, "serving_requests_total", handler="/predict", status="200") == requests
    assert metric_delta(before, after, "serving_requests_total", handler="/predict", status="413") == 0


def test_production_figures_of_recent_predictions():
    recent = [
        {"probability_malignant": p, "label": "malignant" if p >= 0.5 else "benign", "latency_ms": ms}
        for p, ms in ((0.05, 10.0), (0.55, 20.0), (0.95, 30.0), (1.0, 40.0))
    ]
    figures = recent_figures(recent)
    assert figures["malignant_share"] == 0.75
    assert (figures["latency_p50_ms"], figures["latency_p95_ms"]) == (20.0, 40.0)
    assert figures["histogram"]["predictions"] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 2]  # 1.0 falls in the last bin
    assert figures["histogram"]["probability of malignant"][0] == "0.0–0.1"
    assert recent_figures([])["latency_p50_ms"] is None
    assert asset_links("http://dagster:3000/")["production_drift"] == "http://dagster:3000/assets/production_drift"
