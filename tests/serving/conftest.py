"""Real serving processes for the serving suite, real images, and a second champion version."""

import io
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from PIL import Image
from tests.helpers import copy_version
from tests.serving.serving_support import ADMIN_TOKEN, DATASET, MAX_UPLOAD_MB, Serving, champion_serving


@pytest.fixture(scope="session")
def serving(smoke_champion, tmp_path_factory) -> Serving:
    """Serving with the smoke champion, an admin token and a small upload limit, ready."""
    server = champion_serving(
        tmp_path_factory.mktemp("serving"), smoke_champion, {"SERVING_ADMIN_TOKEN": ADMIN_TOKEN, "MAX_UPLOAD_MB": str(MAX_UPLOAD_MB)}
    )
    yield server
    server.stop()


@pytest.fixture
def client(serving):
    with httpx.Client(base_url=serving.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def jpeg_path() -> Path:
    return sorted((DATASET / "test" / "benign").glob("*.jpg"))[0]


@pytest.fixture(scope="session")
def jpeg(jpeg_path) -> bytes:
    """A real 224x224 JPEG of the data set."""
    return jpeg_path.read_bytes()


@pytest.fixture(scope="session")
def lesion(jpeg) -> Image.Image:
    with Image.open(io.BytesIO(jpeg)) as image:
        return image.convert("RGB")


@pytest.fixture
def restores_serving(serving, smoke_champion):
    """After the test, however it ended: the alias on the smoke champion, served again, reload state idle.

    So tests that swap or break the served model leave the session's server as they found it.
    """
    yield
    MlflowClient(smoke_champion["tracking_uri"]).set_registered_model_alias(
        smoke_champion["model_name"], "champion", smoke_champion["version"]
    )
    with httpx.Client(base_url=serving.url, timeout=30) as client:
        client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).raise_for_status()
    serving.wait_until(
        lambda c: (m := c.get("/model").json()).get("version") == smoke_champion["version"] and m["reload"]["state"] == "idle",
        f"served version {smoke_champion['version']} again",
    )


@pytest.fixture
def new_champion(smoke_champion, restores_serving):
    """A second registered version (same artifacts, threshold 0) that takes the `champion` alias."""
    client = MlflowClient(smoke_champion["tracking_uri"])
    name = smoke_champion["model_name"]
    original = client.get_model_version_by_alias(name, "champion")
    created = copy_version(client, original, tags={"threshold": "0.0"})
    client.set_registered_model_alias(name, "champion", created.version)
    return {"version": str(created.version), "previous_version": str(original.version), "threshold": 0.0}
