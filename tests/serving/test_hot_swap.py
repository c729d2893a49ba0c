"""Reloads on a live server: a hot swap under load, and a failed load that keeps the old model."""

import threading
import time

import httpx
import pytest
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families
from tests.serving.serving_support import ADMIN_TOKEN

CLIENTS = 8
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class LoadClients:
    """`CLIENTS` threads posting the same JPEG back to back, recording every answer."""

    def __init__(self, url: str, jpeg: bytes):
        self.url, self.jpeg = url, jpeg
        self.answers: list[list[dict]] = [[] for _ in range(CLIENTS)]
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, args=(i,)) for i in range(CLIENTS)]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def _send(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as client:
            while not self._stop.is_set():
                try:
                    response = client.post("/predict", files={"file": ("lesion.jpg", self.jpeg, "image/jpeg")})
                except httpx.HTTPError as error:
                    self.failures.append(f"client {index}: {error!r}")
                    continue
                if response.status_code != 200:
                    self.failures.append(f"client {index}: {response.status_code} {response.text}")
                    continue
                self.answers[index].append(response.json()["predictions"][0])

    def count(self) -> int:
        return sum(len(answers) for answers in self.answers)


def _reload(serving, client: httpx.Client, version: str) -> None:
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "reloading"
    serving.wait_until(
        lambda c: (model := c.get("/model").json())["version"] == version and model["reload"]["state"] == "idle",
        f"reported version {version} after a reload",
    )


def _wait_for_answers(load: LoadClients, more: int, timeout: float = 120.0) -> None:
    target, deadline = load.count() + more, time.monotonic() + timeout
    while load.count() < target and not load.failures and time.monotonic() < deadline:
        time.sleep(0.05)


def test_hot_swap_under_load_fails_no_request(serving, client, jpeg, new_champion, smoke_champion):
    old, new = new_champion["previous_version"], new_champion["version"]
    assert client.get("/model").json()["version"] == old

    with LoadClients(serving.url, jpeg) as load:
        _wait_for_answers(load, CLIENTS * 2)
        _reload(serving, client, new)
        _wait_for_answers(load, CLIENTS * 2)

    assert not load.failures, load.failures[:5]
    for answers in load.answers:
        versions = [answer["model_version"] for answer in answers]
        assert versions, "every client got answers"
        assert versions == sorted(versions, key=lambda v: v == new), f"a client went back to the old model: {versions}"
    seen = {answer["model_version"] for answers in load.answers for answer in answers}
    assert seen == {old, new}
    for answer in (a for answers in load.answers for a in answers if a["model_version"] == new):
        assert answer["threshold"] == new_champion["threshold"] and answer["label"] == "malignant"

    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
        if sample.name in ("serving_batch_size_sum", "serving_batch_size_count")
    }
    assert samples["serving_batch_size_sum"] > samples["serving_batch_size_count"], "concurrent requests were batched"

    MlflowClient(smoke_champion["tracking_uri"]).set_registered_model_alias(smoke_champion["model_name"], "champion", old)
    _reload(serving, client, old)


@pytest.fixture
def broken_champion(smoke_champion):
    """A version whose artifacts do not exist holds the `champion` alias during the test."""
    client = MlflowClient(smoke_champion["tracking_uri"])
    name = smoke_champion["model_name"]
    original = client.get_model_version_by_alias(name, "champion")
    artifacts = client.get_run(original.run_id).info.artifact_uri
    broken = client.create_model_version(name, source=f"{artifacts}/no-such-model", run_id=original.run_id)
    client.set_registered_model_alias(name, "champion", broken.version)
    yield str(original.version)
    client.set_registered_model_alias(name, "champion", original.version)


def test_failed_reload_keeps_the_old_model_and_reports_why(serving, client, jpeg, broken_champion):
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 202
    model = serving.wait_until(
        lambda c: (m := c.get("/model").json())["reload"]["state"] == "failed" and m, "reported a failed reload"
    )
    assert model["version"] == broken_champion
    assert model["reload"]["error"]
    assert client.get("/ready").json() == {"ready": True, "version": broken_champion}
    answer = client.post("/predict", files={"file": ("lesion.jpg", jpeg, "image/jpeg")})
    assert answer.status_code == 200
    assert answer.json()["model"]["version"] == broken_champion
