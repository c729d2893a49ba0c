"""The batcher on a real server: no model call over SERVING_MAX_BATCH, and a hung call times out alone.

The model is a real Keras model in an MLflow folder whose call hangs on an all-white image
(tests/serving/slow_model.py), served by the real app under uvicorn.
"""

import threading
import time

import httpx
import pytest
from tests.serving.serving_support import Serving, encode, metric_delta, metric_samples
from tests.serving.slow_model import HANG_S, save_slow_model, white_png

MAX_BATCH = 4
TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def slow_serving(tmp_path_factory):
    work = tmp_path_factory.mktemp("slow-serving")
    server = Serving(
        work,
        {
            "MODEL_URI": str(save_slow_model(work / "model")),
            "SERVING_MAX_BATCH": str(MAX_BATCH),
            "SERVING_PREDICT_TIMEOUT_S": str(TIMEOUT_S),
        },
        launcher="tests.serving.slow_model",
    )
    server.wait_until(lambda client: client.get("/ready").status_code == 200, "became ready")
    yield server
    server.stop()


def _files(png: bytes, count: int, prefix: str = "lesion") -> list:
    return [("file", (f"{prefix}-{index}.png", png, "image/png")) for index in range(count)]


def test_a_large_request_is_split_into_calls_of_at_most_max_batch(slow_serving, lesion):
    png = encode(lesion, "PNG")
    with httpx.Client(base_url=slow_serving.url, timeout=60) as client:
        before = metric_samples(client)
        response = client.post("/predict", files=_files(png, 10))
        after = metric_samples(client)
    assert response.status_code == 200, response.text
    assert [p["filename"] for p in response.json()["predictions"]] == [f"lesion-{i}.png" for i in range(10)]
    assert metric_delta(before, after, "serving_batch_size_sum") == 10
    assert metric_delta(before, after, "serving_batch_size_count") == 3  # 4 + 4 + 2
    assert metric_delta(before, after, "serving_batch_size_bucket", le="4.0") == 3


def test_concurrent_requests_are_all_answered_in_calls_of_at_most_max_batch(slow_serving, lesion):
    png = encode(lesion, "PNG")
    answers: list[int] = []

    def send(count: int) -> None:
        with httpx.Client(base_url=slow_serving.url, timeout=60) as client:
            answers.append(client.post("/predict", files=_files(png, count)).status_code)

    with httpx.Client(base_url=slow_serving.url, timeout=60) as client:
        before = metric_samples(client)
        threads = [threading.Thread(target=send, args=(count,)) for count in (3, 3, 3, 1, 1, 1, 1, 5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        after = metric_samples(client)
    assert answers == [200] * len(threads)
    calls = metric_delta(before, after, "serving_batch_size_count")
    assert metric_delta(before, after, "serving_batch_size_sum") == 18
    assert metric_delta(before, after, "serving_batch_size_bucket", le="4.0") == calls, "a call took more than 4 images"


def test_a_hung_model_call_answers_503_and_the_next_request_is_answered(slow_serving, lesion):
    results: dict[str, tuple[int, dict, float]] = {}

    def send(name: str, files: list) -> None:
        started = time.monotonic()
        with httpx.Client(base_url=slow_serving.url, timeout=HANG_S * 3) as client:
            response = client.post("/predict", files=files)
        results[name] = (response.status_code, response.json(), time.monotonic() - started)

    with httpx.Client(base_url=slow_serving.url, timeout=60) as client:
        before = metric_samples(client)
        hung = threading.Thread(target=send, args=("hung", [("file", ("white.png", white_png(), "image/png"))]))
        hung.start()
        time.sleep(0.5)  # the white image's call is running now
        send("behind it", _files(encode(lesion, "PNG"), 1))
        hung.join(HANG_S * 3)
        send("after it", _files(encode(lesion, "PNG"), 1))
        after = metric_samples(client)

    status, body, seconds = results["hung"]
    assert status == 503 and "SERVING_PREDICT_TIMEOUT_S" in body["detail"], body
    assert seconds < TIMEOUT_S + 2, f"the hung request waited {seconds:.1f} s"
    status, body, seconds = results["behind it"]
    assert status == 200, body
    assert seconds < TIMEOUT_S + 2, f"the request queued behind the hung call waited {seconds:.1f} s"
    assert results["after it"][0] == 200 and results["after it"][2] < 2
    assert metric_delta(before, after, "serving_model_timeouts_total") == 1
