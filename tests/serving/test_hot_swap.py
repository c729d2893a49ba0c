"""Reloads on a live server: a hot swap under load, reloads during a load, and a failed load that
keeps the old model. Each test leaves the server serving the smoke champion (`restores_serving`)."""

import threading
import time

import httpx
import pytest
from mlflow import MlflowClient
from tests.serving.serving_support import ADMIN_TOKEN, metric_delta, metric_samples

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
    """Until the clients got `more` answers; fails on the first failed request or at the timeout."""
    target, deadline = load.count() + more, time.monotonic() + timeout
    while load.count() < target:
        assert not load.failures, load.failures[:5]
        assert time.monotonic() < deadline, f"only {load.count() - target + more} of {more} answers in {timeout:.0f} s"
        time.sleep(0.05)


def test_hot_swap_under_load_fails_no_request(serving, client, jpeg, new_champion):
    old, new = new_champion["previous_version"], new_champion["version"]
    assert client.get("/model").json()["version"] == old

    before = metric_samples(client)
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

    after = metric_samples(client)
    images = metric_delta(before, after, "serving_batch_size_sum")
    calls = metric_delta(before, after, "serving_batch_size_count")
    assert images == load.count(), "every answered image went through the batcher once"
    assert images > calls, f"{images:.0f} one-image requests from {CLIENTS} clients took {calls:.0f} model calls: none batched"


def test_reloads_during_a_load_run_it_once_more(serving, client, new_champion):
    before = metric_samples(client)
    for _ in range(3):
        assert client.post("/admin/reload", headers=ADMIN).status_code == 202
    during = metric_samples(client)
    assert client.get("/model").json()["reload"]["state"] == "loading"
    assert metric_delta(before, during, "serving_model_loads_total", result="success") == 0, "the first load had ended"

    model = serving.wait_until(
        lambda c: (m := c.get("/model").json())["reload"]["state"] == "idle" and m, "finished reloading"
    )
    after = metric_samples(client)
    assert model["version"] == new_champion["version"]
    assert metric_delta(before, after, "serving_model_loads_total", result="success") == 2, "one load, then one more"


@pytest.fixture
def broken_champion(smoke_champion, restores_serving):
    """A version whose artifacts do not exist holds the `champion` alias during the test."""
    client = MlflowClient(smoke_champion["tracking_uri"])
    name = smoke_champion["model_name"]
    original = client.get_model_version_by_alias(name, "champion")
    artifacts = client.get_run(original.run_id).info.artifact_uri
    broken = client.create_model_version(name, source=f"{artifacts}/no-such-model", run_id=original.run_id)
    client.set_registered_model_alias(name, "champion", broken.version)
    return str(original.version)


def test_failed_reload_keeps_the_old_model_and_reports_why(serving, client, jpeg, broken_champion, smoke_champion):
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 202
    model = serving.wait_until(
        lambda c: (m := c.get("/model").json())["reload"]["state"] == "failed" and m, "reported a failed reload"
    )
    assert model["version"] == broken_champion
    assert model["reload"]["error"]
    internal = smoke_champion["tracking_uri"].removeprefix("http://")
    assert internal not in model["reload"]["error"] and "no-such-model" not in model["reload"]["error"]
    assert "Traceback" in serving.service.log_tail(20000), "the details went to the log"
    assert client.get("/ready").json() == {"ready": True, "version": broken_champion}
    answer = client.post("/predict", files={"file": ("lesion.jpg", jpeg, "image/jpeg")})
    assert answer.status_code == 200
    assert answer.json()["model"]["version"] == broken_champion
