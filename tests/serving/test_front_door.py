"""Nothing is read before it is allowed: hostile requests against a real uvicorn over raw sockets.

Each is answered within a second with the right status, after the server read at most its limit:
a 20 MB body without a token, malformed JSON without a token, bodies over the limit (declared or
not), a body that trickles in, more prediction requests than SERVING_MAX_IN_FLIGHT.
"""

import json
import socket
import threading
import time

import httpx
import pytest
from tests.serving.serving_support import ADMIN_TOKEN, Serving, champion_serving

FEEDBACK_TOKEN = "front-door-feedback-token"
MONITORING_TOKEN = "front-door-monitoring-token"
MAX_UPLOAD_MB = 1
MAX_IN_FLIGHT = 2
GRACE_S = 1.0
TWENTY_MB = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def door(smoke_champion, tmp_path_factory) -> Serving:
    server = champion_serving(
        tmp_path_factory.mktemp("front-door"),
        smoke_champion,
        {
            "SERVING_ADMIN_TOKEN": ADMIN_TOKEN,
            "SERVING_FEEDBACK_TOKEN": FEEDBACK_TOKEN,
            "SERVING_MONITORING_TOKEN": MONITORING_TOKEN,
            "MAX_UPLOAD_MB": str(MAX_UPLOAD_MB),
            "SERVING_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
            "SERVING_UPLOAD_GRACE_S": str(GRACE_S),
            "SERVING_MIN_UPLOAD_RATE_KB_S": "100",
        },
    )
    yield server
    server.stop()


class RawRequest:
    """One HTTP/1.1 request on its own socket: the headers, then as much body as the test sends."""

    def __init__(self, server: Serving, method: str, path: str, headers: dict[str, str]):
        host, port = server.url.removeprefix("http://").split(":")
        self.socket = socket.create_connection((host, int(port)), timeout=5)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
        self.socket.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.started = time.monotonic()

    def send_in_background(self, body: bytes) -> threading.Thread:
        """Keep sending `body` while the test reads the answer; a server that closes ends it."""

        def send() -> None:
            try:
                self.socket.sendall(body)
            except OSError:
                pass

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        return thread

    def answer(self) -> tuple[int, dict[str, str], dict, float]:
        """Status, headers, JSON body and seconds since the headers were sent."""
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
            chunk = self.socket.recv(65536)
            if not chunk:
                break
            data += chunk
        seconds = time.monotonic() - self.started
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
        return int(status_line.split()[1]), headers, json.loads(body), seconds

    def close(self) -> None:
        self.socket.close()


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


def _hostile(door: Serving, path: str, body: bytes, headers: dict | None = None, declare_length: bool = True):
    request = RawRequest(
        door, "POST", path,
        {"Content-Type": "application/json", **({"Content-Length": str(len(body))} if declare_length else {"Transfer-Encoding": "chunked"}), **(headers or {})},
    )
    try:
        if not declare_length:  # one endless chunk: only the bytes read can tell its size
            body = f"{len(body):x}\r\n".encode() + body
        request.send_in_background(body)
        return request.answer()
    finally:
        request.close()


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", ["/feedback", "/admin/reload"])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic x"])
def test_a_20_mb_body_without_the_token_is_refused_401_at_once(door, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    status, answer_headers, body, seconds = _hostile(door, path, b"{" * TWENTY_MB, headers)
    assert status == 401, body
    assert answer_headers["www-authenticate"] == "Bearer" and answer_headers["connection"] == "close"
    assert seconds < 1, f"took {seconds:.2f} s"


def test_malformed_json_without_the_token_is_refused_401(door):
    status, _, body, seconds = _hostile(door, "/feedback", b'{"prediction_id": ')
    assert status == 401 and "SERVING_FEEDBACK_TOKEN" in body["detail"], body
    assert seconds < 1


@pytest.mark.parametrize("declare_length", [True, False], ids=["declared", "chunked"])
def test_a_20_mb_body_with_the_token_is_refused_413_at_its_limit(door, declare_length):
    status, answer_headers, body, seconds = _hostile(door, "/feedback", b" " * TWENTY_MB, _bearer(FEEDBACK_TOKEN), declare_length)
    assert status == 413 and "too large" in body["detail"], body
    assert answer_headers["connection"] == "close"
    assert seconds < 1, f"took {seconds:.2f} s"
    assert door.rss_mb() < 2000


@pytest.mark.parametrize("path", ["/predict", "/v2/models/skin-cancer-classifier/infer"])
def test_an_upload_over_max_upload_mb_is_refused_413_before_it_is_read(door, path):
    status, _, body, seconds = _hostile(door, path, b"\0" * TWENTY_MB, {"Content-Type": "application/octet-stream"})
    assert status == 413 and "MAX_UPLOAD_MB" in (body.get("detail") or body.get("error")), body
    assert seconds < 1


def test_a_body_slower_than_the_minimum_rate_is_cut_off_408(door):
    request = RawRequest(door, "POST", "/feedback", {"Content-Length": "1000", "Content-Type": "application/json", **_bearer(FEEDBACK_TOKEN)})
    try:
        request.socket.sendall(b'{"predic')  # then nothing: a slow client holding the connection
        status, headers, body, seconds = request.answer()
    finally:
        request.close()
    assert status == 408 and "SERVING_MIN_UPLOAD_RATE_KB_S" in body["detail"], body
    assert headers["connection"] == "close"
    assert GRACE_S <= seconds < GRACE_S + 1


def test_prediction_requests_over_max_in_flight_answer_503_before_their_body(door):
    holding = [
        RawRequest(door, "POST", "/predict", {"Content-Length": "100000", "Content-Type": "multipart/form-data; boundary=x"})
        for _ in range(MAX_IN_FLIGHT)
    ]
    try:
        time.sleep(0.3)  # the holders' headers reach the server; they then hold for GRACE_S, sending no body
        status, headers, body, seconds = _hostile(door, "/predict", b"\0" * 1000, {"Content-Type": "multipart/form-data; boundary=x"})
        held = [request.answer()[0] for request in holding]
    finally:
        for request in holding:
            request.close()
    assert status == 503 and "SERVING_MAX_IN_FLIGHT" in body["detail"], body
    assert headers["retry-after"] == "1" and seconds < 1
    assert held == [408] * MAX_IN_FLIGHT
    with httpx.Client(base_url=door.url) as client:
        assert client.get("/ready").status_code == 200


def test_monitoring_needs_its_token(door):
    with httpx.Client(base_url=door.url, timeout=10) as client:
        refused = [client.get("/monitoring/recent"), client.get("/monitoring/recent", headers=_bearer("wrong"))]
        allowed = client.get("/monitoring/recent", headers=_bearer(MONITORING_TOKEN))
    assert [response.status_code for response in refused] == [401, 401]
    assert "SERVING_MONITORING_TOKEN" in refused[0].json()["detail"]
    assert allowed.status_code == 200 and "recent" in allowed.json()
