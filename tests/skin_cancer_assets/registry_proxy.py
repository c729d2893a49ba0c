"""A tiny real HTTP proxy on loopback in front of the MLflow server, answering 503 to chosen calls
and, when given credentials, 401 to calls without them (as MLflow's basic-auth app does)."""

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


class FailingProxy:
    """Forwards every request to `upstream`, except those whose path contains `failing_path` and,
    with `credentials` (user, password), those without them."""

    def __init__(self, upstream: str, failing_path: str, credentials: tuple[str, str] | None = None):
        self.failed = 0
        proxy = self
        expected = "Basic " + base64.b64encode(":".join(credentials).encode()).decode() if credentials else None

        class Handler(BaseHTTPRequestHandler):
            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if expected and self.headers.get("Authorization") != expected:
                    self._answer(401, {"Content-Type": "text/plain"}, b"You are not authenticated.")
                    return
                if failing_path in self.path:
                    proxy.failed += 1
                    self._answer(503, {"Content-Type": "text/plain"}, b"upstream unavailable")
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                answer = httpx.request(self.command, f"{upstream}{self.path}", headers=headers, content=body, timeout=60)
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
                self._answer(answer.status_code, kept, answer.content)

            def _answer(self, status: int, headers: dict, body: bytes):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
