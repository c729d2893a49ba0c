"""Real processes for the app's tests: serving with the smoke champion, the Streamlit app; pages of
the session's Chromium (tests/conftest.py)."""

import os
import shutil
from pathlib import Path

import pytest
from tests.helpers import free_port
from tests.streamlit_app.app_services import MONITORING_TOKEN, REPO_ROOT, SERVING_LIMITS, start_serving, start_streamlit

def first_image(dataset: Path, label: str) -> Path:
    images = sorted((dataset / "test" / label).glob("*.jpg"))
    if not images:
        pytest.fail(f"no test images under {dataset / 'test' / label}")
    return images[0]


@pytest.fixture(scope="session")
def benign_image(dataset) -> Path:
    return first_image(dataset, "benign")


@pytest.fixture(scope="session")
def malignant_image(dataset) -> Path:
    return first_image(dataset, "malignant")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Screenshots land here (gitignored) so CI can keep them."""
    path = REPO_ROOT / "test-artifacts" / "streamlit_app"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def serving_url(smoke_champion, tmp_path_factory):
    """A real serving process holding the smoke champion, ready to predict, with upload limits of its own
    (not serving's defaults), so an app that ignored them would be caught."""
    service, url = start_serving(
        tmp_path_factory.mktemp("serving"),
        {
            "MODEL_URI": smoke_champion["model_uri"],
            "MLFLOW_TRACKING_URI": smoke_champion["tracking_uri"],
            "SERVING_MONITORING_TOKEN": MONITORING_TOKEN,
            **SERVING_LIMITS,
        },
        ready=True,
    )
    yield url
    service.stop()


@pytest.fixture
def unready_serving_url(tmp_path, smoke_champion):
    """A real serving process whose model URI names no model, so it never becomes ready."""
    service, url = start_serving(
        tmp_path,
        {
            "MODEL_URI": f"models:/{smoke_champion['model_name']}@no-such-alias",
            "MLFLOW_TRACKING_URI": smoke_champion["tracking_uri"],
        },
        ready=False,
    )
    yield url
    service.stop()


@pytest.fixture
def stopped_serving_url() -> str:
    """Where serving would be if it ran: a free port nobody listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def app_url(serving_url, tmp_path_factory):
    """`streamlit run` of the app, talking to the ready serving."""
    service, url = start_streamlit(serving_url, tmp_path_factory.mktemp("streamlit") / "streamlit.log")
    yield url
    service.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield context.new_page()
    context.close()


@pytest.fixture
def save_screenshot(artifacts_dir):
    """Save a screenshot under test-artifacts/; with UPDATE_DOCS_SCREENSHOTS=1 also as docs/images/<docs>."""

    def save(page, name: str, docs: str | None = None) -> Path:
        path = artifacts_dir / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if docs and os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
            (REPO_ROOT / "docs" / "images").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, REPO_ROOT / "docs" / "images" / docs)
        return path

    return save
