"""The batcher on a real server: no model call over SERVING_MAX_BATCH, a hung call times out alone,
a full queue and a passed deadline answer 503 with Retry-After, and with two model calls at once a
hung call holds up only its own requests.

The model is a real Keras model in an MLflow folder whose call hangs on an all-white image
(tests/serving/slow_model.py), served by the real app under uvicorn.
"""

import threading
import time

import httpx
import pytest
from tests.serving.serving_support import Serving, encode, metric_delta, metric_samples
from tests.serving.slow_model import HANG_S, HANG_STARTED, save_slow_model, white_png

MAX_BATCH = 4
MAX_QUEUED = 20
TIMEOUT_S = 2.0
DEADLINE_S = 3.0


def _slow_serving(work, model_calls: int) -> Serving:
    server = Serving(
        work,
        {
            "MODEL_URI": str(save_slow_model(work / "model")),
            "SERVING_MAX_BATCH": str(MAX_BATCH),
            "SERVING_MAX_QUEUED_IMAGES": str(MAX_QUEUED),
            "SERVING_PREDICT_TIMEOUT_S": str(TIMEOUT_S),
            "SERVING_REQUEST_DEADLINE_S": str(DEADLINE_S),
            "SERVING_MODEL_CALLS": str(model_calls),
            HANG_STARTED: str(work / "hang-started"),
        },
        launcher="tests.serving.slow_model",
    )
    server.wait_until(lambda client: client.get("/ready").status_code == 200, "became ready")
    server.hang_started = work / "hang-started"
    return server


@pytest.fixture(scope="module")
def slow_serving(tmp_path_factory):
    """One model call at a time: a hung call holds up the queue behind it, as these tests need."""
    server = _slow_serving(tmp_path_factory.mktemp("slow-serving"), model_calls=1)
    yield server
    server.stop()


def _start_hung_call(server: Serving, send) -> threading.Thread:
    """Send a white image, whose model call hangs, and return once that call is running (the model
    touches `hang_started` as it starts)."""
    server.hang_started.unlink(missing_ok=True)
    hung = threading.Thread(target=send, args=("hung", [("file", ("white.png", white_png(), "image/png"))]))
    hung.start()
    deadline = time.monotonic() + 30
    while not server.hang_started.exists():
        assert time.monotonic() < deadline, "the white image's model call never started"
        time.sleep(0.01)
    return hung


def _timed_sender(server: Serving, results: dict):
    def send(name: str, files: list) -> None:
        started = time.monotonic()
        with httpx.Client(base_url=server.url, timeout=HANG_S * 3) as client:
            response = client.post("/predict", files=files)
        results[name] = (response.status_code, response.json(), time.monotonic() - started, response.headers)

    return send


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
    results: dict[str, tuple] = {}
    send = _timed_sender(slow_serving, results)

    with httpx.Client(base_url=slow_serving.url, timeout=60) as client:
        before = metric_samples(client)
        hung = _start_hung_call(slow_serving, send)
        send("behind it", _files(encode(lesion, "PNG"), 1))
        hung.join(HANG_S * 3)
        send("after it", _files(encode(lesion, "PNG"), 1))
        after = metric_samples(client)

    status, body, seconds, _ = results["hung"]
    assert status == 503 and "SERVING_PREDICT_TIMEOUT_S" in body["detail"], body
    assert seconds < TIMEOUT_S + 2, f"the hung request waited {seconds:.1f} s"
    status, body, seconds, _ = results["behind it"]
    assert status == 200, body
    assert seconds < TIMEOUT_S + 2, f"the request queued behind the hung call waited {seconds:.1f} s"
    assert results["after it"][0] == 200 and results["after it"][2] < 2
    assert metric_delta(before, after, "serving_model_timeouts_total") == 1


def test_a_full_queue_answers_503_with_retry_after_at_once(slow_serving, lesion):
    png = encode(lesion, "PNG")
    results: dict[str, tuple] = {}
    send = _timed_sender(slow_serving, results)
    hung = _start_hung_call(slow_serving, send)
    waiting = threading.Thread(target=send, args=("waiting", _files(png, MAX_QUEUED - 4)))
    waiting.start()
    slow_serving.wait_until(
        lambda c: metric_samples(c).get(("serving_queued_images", ())) == MAX_QUEUED - 4, "queued the waiting request", timeout=10
    )
    send("over the queue", _files(png, 5))
    waiting.join(HANG_S * 3)
    hung.join(HANG_S * 3)

    status, body, seconds, headers = results["over the queue"]
    assert status == 503 and "SERVING_MAX_QUEUED_IMAGES" in body["detail"], body
    assert headers["retry-after"] == "1"
    assert seconds < 1, f"a request refused for a full queue took {seconds:.2f} s"
    assert results["waiting"][0] == 200, "the queued request is answered once the hung call is abandoned"


def test_a_request_past_its_deadline_answers_503_with_retry_after(slow_serving, lesion):
    """Behind two hung calls (2 x SERVING_PREDICT_TIMEOUT_S), a request would wait past SERVING_REQUEST_DEADLINE_S."""
    results: dict[str, tuple] = {}
    send = _timed_sender(slow_serving, results)
    first = _start_hung_call(slow_serving, send)
    behind = [
        threading.Thread(target=send, args=("second hung", [("file", ("white.png", white_png(), "image/png"))])),
        threading.Thread(target=send, args=("late", _files(encode(lesion, "PNG"), 1))),
    ]
    for thread in behind:
        thread.start()
    for thread in [first, *behind]:
        thread.join(HANG_S * 3)

    status, body, seconds, headers = results["late"]
    assert status == 503 and "SERVING_REQUEST_DEADLINE_S" in body["detail"], body
    assert headers["retry-after"] == "1"
    assert DEADLINE_S - 0.5 < seconds < DEADLINE_S + 1, f"answered after {seconds:.1f} s"


def test_with_two_model_calls_a_hung_call_holds_up_only_its_own_requests(tmp_path, lesion):
    """SERVING_MODEL_CALLS=2 (the default): while one call hangs, the other answers the next request at
    once, where one call at a time makes it wait for the timeout (the test above)."""
    server = _slow_serving(tmp_path, model_calls=2)
    results: dict[str, tuple] = {}
    send = _timed_sender(server, results)
    try:
        hung = _start_hung_call(server, send)
        send("beside it", _files(encode(lesion, "PNG"), 1))
        hung.join(HANG_S * 3)
    finally:
        server.stop()

    status, body, seconds, _ = results["beside it"]
    assert status == 200, body
    assert seconds < TIMEOUT_S / 2, f"the request beside the hung call waited {seconds:.1f} s"
    assert results["hung"][0] == 503
