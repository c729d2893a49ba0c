"""Session fixtures: a real MLflow server, small real data sets, a smoke-profile champion, Chromium.

Every test runs the smoke profile; the environment is set here, before the code location
is imported, exactly as `SKIN_CANCER_PROFILE=smoke make dev` would.
"""

import os
import shutil
from pathlib import Path

import pytest

os.environ["SKIN_CANCER_PROFILE"] = "smoke"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.browser import chromium  # noqa: E402
from tests.helpers import start_mlflow_server  # noqa: E402
from tests.resources.s3_support import S3Server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATASET = Path(os.environ.get("SKIN_CANCER_DATA", REPO.parent / "shared" / "datasets" / "skin-cancer"))


@pytest.fixture(scope="session")
def dataset() -> Path:
    if not (DATASET / "train").is_dir():
        pytest.fail(f"the real data set is missing at {DATASET} (set SKIN_CANCER_DATA)")
    return DATASET


def copy_subset(target: Path, per_class: int = 12) -> Path:
    """Copy the first `per_class` real images of every split and class into `target`."""
    for split in ("train", "test"):
        for label in ("benign", "malignant"):
            source = DATASET / split / label
            (target / split / label).mkdir(parents=True)
            for path in sorted(source.iterdir())[:per_class]:
                shutil.copy(path, target / split / label / path.name)
    return target


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> str:
    """A real `mlflow server` on loopback with a sqlite backend and local artifact store."""
    service, uri = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield uri
    service.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    """`moto_server` as a separate process, shared by the session (tests use their own buckets)."""
    server = S3Server(tmp_path_factory.mktemp("s3-server"))
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def pipeline_env(tmp_path, mlflow_server, monkeypatch) -> dict:
    """Environment of one pipeline run: its own state folder, the test MLflow server, the suites'
    data set (wherever the checkout is) and local storage."""
    env = {
        "SKIN_CANCER_STATE": str(tmp_path / "state"),
        "MLFLOW_TRACKING_URI": mlflow_server,
        "MLFLOW_EXPERIMENT_NAME": f"test-{tmp_path.name}",
        "SKIN_CANCER_DATA": str(DATASET),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_BUCKET", raising=False)
    return env


@pytest.fixture(scope="session")
def smoke_champion(mlflow_server, tmp_path_factory) -> dict:
    """The real smoke graph materialized into `mlflow_server`; the alias `champion` is set."""
    from tests.skin_cancer_assets.pipeline import train_smoke_champion

    champion = train_smoke_champion(tmp_path_factory.mktemp("smoke-champion"), mlflow_server)
    return {
        "tracking_uri": mlflow_server,
        "model_name": champion["name"],
        "version": champion["version"],
        "model_uri": f"models:/{champion['name']}@champion",
        "champion": champion,
    }


@pytest.hookimpl(trylast=True)  # after pytest-randomly has shuffled the order
def pytest_collection_modifyitems(items):
    """The tests that use the browser run last, in their collected order.

    From the first browser test to the end of the session, Playwright's loop is the main
    thread's running loop (tests/browser.py): a test after them that runs asyncio in the
    main thread (asyncio.run, anyio, a loop's run_until_complete) would fail there.
    """
    items.sort(key=lambda item: "browser" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def browser():
    """The session's one headless Chromium (tests/browser.py says why only one)."""
    with chromium() as browser:
        yield browser
