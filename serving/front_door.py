"""The front door: whether a request may send its body is decided before a byte of it is read.

A pure ASGI middleware, so nothing (FastAPI's body parsing, the multipart parser) runs first:
- the bearer token of /feedback, /admin/* and /monitoring/* is checked on the headers alone;
- a Content-Length over the route's limit answers 413 at once, and a body that grows past it
  (chunked, or lying about its length) is cut off at the limit;
- a body arriving slower than SERVING_MIN_UPLOAD_RATE_KB_S (after SERVING_UPLOAD_GRACE_S) is cut
  off with 408, so a slow client cannot hold a worker's memory and a connection open at will;
- at most SERVING_MAX_IN_FLIGHT prediction requests are admitted at once; more answer 503 with
  Retry-After before their upload is read.
Refusals before or during the body close the connection, so the rest of the body is never read.
"""

import asyncio
import hashlib
import hmac
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import error_response_for
from serving.settings import Settings
from skin_cancer_contract.api import EXPLAIN_ROUTE

CONTROL_BODY_BYTES = 64 * 1024
"""Largest body of every route but the prediction routes (a feedback record, an admin call)."""
RETRY_AFTER_S = 1
CLOSE = {"Connection": "close"}


class BodyRefused(HTTPException):
    """The body broke a limit while the route read it; an HTTPException, so FastAPI's body
    parsing re-raises it and the error handlers answer it."""

    def __init__(self, status_code: int, message: str):
        super().__init__(status_code, message, headers=CLOSE)


def is_prediction(method: str, path: str) -> bool:
    """The routes that take images: MAX_UPLOAD_MB bodies, counted in SERVING_MAX_IN_FLIGHT."""
    return method == "POST" and (path in ("/predict", EXPLAIN_ROUTE) or (path.startswith("/v2/models/") and path.endswith("/infer")))


def too_large(max_bytes: int) -> str:
    if max_bytes == CONTROL_BODY_BYTES:
        return f"the request is too large: this route takes at most {CONTROL_BODY_BYTES // 1024} KB"
    return f"the request is too large: over MAX_UPLOAD_MB={max_bytes / 1024 / 1024:g} MB"


def _guard(path: str, settings: Settings) -> tuple[str | None, str, str] | None:
    """(the token, its variable, what it allows) of a guarded path; None for an open one."""
    if path == "/feedback":
        return settings.feedback_token, "SERVING_FEEDBACK_TOKEN", "feedback"
    if path.startswith("/admin/"):
        return settings.admin_token, "SERVING_ADMIN_TOKEN", "administration"
    if path.startswith("/monitoring/"):
        return settings.monitoring_token, "SERVING_MONITORING_TOKEN (or SERVING_FEEDBACK_TOKEN)", "monitoring"
    return None


def _bearer_refusal(authorization: str | None, token: str | None, variable: str, what: str) -> tuple[int, str] | None:
    """403 when the server has no token for `what`, 401 when the request's bearer token is missing or wrong."""
    if token is None:
        return 403, f"{what} is disabled: the server was started without {variable}"
    scheme, _, sent = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not same_secret(sent.strip(), token):
        return 401, f"missing or wrong bearer token: send 'Authorization: Bearer <{variable}>'"
    return None


def same_secret(sent: str, secret: str) -> bool:
    """Constant-time in the content and the length (both sides are hashed first)."""
    return hmac.compare_digest(hashlib.sha256(sent.encode()).digest(), hashlib.sha256(secret.encode()).digest())


class FrontDoor:
    def __init__(self, app: ASGIApp):
        self.app = app
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        settings: Settings = scope["app"].state.settings
        path, method = scope["path"], scope["method"]
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        guard = _guard(path, settings)
        if guard is not None and (refusal := _bearer_refusal(headers.get("authorization"), *guard)):
            status, message = refusal
            extra = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
            return await _refuse(scope, receive, send, status, message, extra)
        prediction = is_prediction(method, path)
        limit = settings.max_upload_bytes if prediction else CONTROL_BODY_BYTES
        declared = headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            return await _refuse(scope, receive, send, 413, too_large(limit))
        if not prediction:
            return await self.app(scope, _MeteredBody(receive, limit, settings), send)
        if self.in_flight >= settings.max_in_flight:
            message = f"busy: {self.in_flight} prediction requests are running (SERVING_MAX_IN_FLIGHT); retry shortly"
            return await _refuse(scope, receive, send, 503, message, {"Retry-After": str(RETRY_AFTER_S)})
        self.in_flight += 1
        try:
            await self.app(scope, _MeteredBody(receive, limit, settings), send)
        finally:
            self.in_flight -= 1


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str, headers: dict | None = None) -> None:
    await error_response_for(scope["path"], status, message, {**CLOSE, **(headers or {})})(scope, receive, send)


class _MeteredBody:
    """`receive`, refusing the body once it grows past `limit` bytes or arrives too slowly."""

    def __init__(self, receive: Receive, limit: int, settings: Settings):
        self.receive, self.limit = receive, limit
        self.min_rate, self.grace_s = settings.min_upload_rate_bytes_s, settings.upload_grace_s
        self.started = time.monotonic()
        self.received = 0
        self.complete = False

    async def __call__(self) -> Message:
        if self.complete:  # after the body: waiting for a disconnect is no upload
            return await self.receive()
        left_s = None  # SERVING_MIN_UPLOAD_RATE_KB_S=0: no limit
        if self.min_rate:
            left_s = max(0.0, self.grace_s + self.received / self.min_rate - (time.monotonic() - self.started))
        try:
            message = await asyncio.wait_for(self.receive(), left_s)
        except TimeoutError:
            raise BodyRefused(408, f"the body arrived too slowly (under SERVING_MIN_UPLOAD_RATE_KB_S={self.min_rate / 1024:g})") from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                raise BodyRefused(413, too_large(self.limit))
            self.complete = not message.get("more_body", False)
        return message
