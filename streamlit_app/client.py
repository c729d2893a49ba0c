"""HTTP client for the serving API, kept out of the page so tests can drive it directly.

Every failure becomes a `ServingError` whose message is written for the person using the
app, so the page can show it as is and never needs to show a stack trace.
"""

from dataclasses import dataclass

import httpx

from skin_cancer_contract.api import (
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_SERVING_URL,
    EXPLAIN_ROUTE,
    EXPLANATION_METHOD_HEADER,
    LARGEST_CHANGE_HEADER,
    PROBABILITY_HEADER,
    UPLOAD_FIELD,
)


class ServingError(Exception):
    """Serving could not answer; the message says why in words a user can act on."""


class ServingUnavailable(ServingError):
    """Serving is down, has no model yet, or failed: no point trying further files."""


class FileRejected(ServingError):
    """Serving refused one file (not an image, too large, ...); other files may still work."""


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str = ""


@dataclass(frozen=True)
class Limits:
    """What serving takes in one request (its /info), so the app asks for no more."""

    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_files: int = DEFAULT_MAX_FILES


@dataclass(frozen=True)
class Explanation:
    """Serving's heat map of one image (POST /explain): a transparent PNG to lay over the image."""

    heat_map_png: bytes
    probability_malignant: float
    largest_change: float
    """The probability change of the heat map's most opaque region."""
    method: str


def _detail(response: httpx.Response) -> str:
    """The error text of a serving answer: `detail` (FastAPI's, a string or a list) or `reason`, else the body."""
    try:
        body = response.json()
        detail = body.get("detail") or body.get("reason")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):
        detail = "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail)
    return str(detail or response.text.strip() or response.reason_phrase)


class ServingClient:
    """Talks to one serving instance at `base_url` over one pool of kept-alive connections."""

    def __init__(self, base_url: str = DEFAULT_SERVING_URL, timeout: float = 5.0, predict_timeout: float = 120.0):
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._predict_timeout = predict_timeout
        self._http = httpx.Client(base_url=self.base_url)

    def _request(self, method: str, path: str, timeout: float, **kwargs) -> httpx.Response:
        try:
            return self._http.request(method, path, timeout=timeout, **kwargs)
        except httpx.TimeoutException as error:
            raise ServingUnavailable(
                f"The prediction service at {self.base_url} did not answer {method} {path} within {timeout:.0f} s."
            ) from error
        except httpx.HTTPError as error:
            raise ServingUnavailable(
                f"Cannot reach the prediction service at {self.base_url} ({type(error).__name__}). "
                "Is it running? Start it with `make serve`, or set SERVING_URL to where it runs."
            ) from error

    def _json(self, response: httpx.Response, path: str) -> dict:
        try:
            body = response.json()
        except ValueError as error:
            raise ServingUnavailable(f"The prediction service answered {path} with something that is not JSON.") from error
        if not isinstance(body, dict):
            raise ServingUnavailable(f"The prediction service answered {path} with JSON that is not an object.")
        return body

    def _raise_for_unavailable(self, response: httpx.Response, path: str) -> None:
        if response.status_code == 503:
            raise ServingUnavailable(
                f"The prediction service at {self.base_url} is up but cannot answer yet: {_detail(response)}. "
                "Try again in a moment."
            )
        if response.status_code >= 500:
            raise ServingUnavailable(
                f"The prediction service at {self.base_url} failed on {path} "
                f"(HTTP {response.status_code}): {_detail(response)}"
            )

    def readiness(self) -> Readiness:
        """Whether serving has a model loaded; raises ServingUnavailable when it cannot be reached."""
        response = self._request("GET", "/ready", self._timeout)
        if response.status_code == 503:
            return Readiness(False, _detail(response))
        self._raise_for_unavailable(response, "/ready")
        return Readiness(bool(self._json(response, "/ready").get("ready")))

    def model_card(self) -> dict:
        """The loaded model's name, version, class, metrics, threshold, ... (GET /model)."""
        return self._get("/model")

    def recent_predictions(self, token: str | None) -> dict:
        """What this serving process answered since it started (GET /monitoring/recent, bearer `token`):
        counts and the last predictions with their probability, label, version and latency."""
        return self._get("/monitoring/recent", headers={"Authorization": f"Bearer {token}"} if token else {})

    def _get(self, path: str, headers: dict | None = None) -> dict:
        """The JSON object serving answers GET `path` with; any refusal is ServingUnavailable, with serving's reason."""
        response = self._request("GET", path, self._timeout, headers=headers)
        self._raise_for_unavailable(response, path)
        if response.status_code >= 400:
            raise ServingUnavailable(f"The prediction service refused GET {path} (HTTP {response.status_code}): {_detail(response)}")
        return self._json(response, path)

    def limits(self) -> Limits:
        """Serving's upload limits (GET /info); its defaults when this serving does not say."""
        response = self._request("GET", "/info", self._timeout)
        self._raise_for_unavailable(response, "/info")
        limits = self._json(response, "/info").get("limits") or {}
        return Limits(float(limits.get("max_upload_mb", DEFAULT_MAX_UPLOAD_MB)), int(limits.get("max_files", DEFAULT_MAX_FILES)))

    def predict(self, files: list[tuple[str, bytes, str | None]]) -> dict:
        """Predict (filename, bytes, mime type) images in one request; returns serving's answer
        {"model": {...}, "predictions": [...]}. One refused file refuses the request (FileRejected)."""
        parts = [(UPLOAD_FIELD, (name, data, mime_type or "application/octet-stream")) for name, data, mime_type in files]
        response = self._request("POST", "/predict", self._predict_timeout, files=parts)
        self._raise_for_unavailable(response, "/predict")
        if response.status_code >= 400:
            names = ", ".join(name for name, _, _ in files)
            raise FileRejected(f"The prediction service rejected {names}: {_detail(response)}")
        body = self._json(response, "/predict")
        if not isinstance(body.get("predictions"), list) or not isinstance(body.get("model"), dict):
            raise ServingUnavailable("The prediction service answered /predict without `model` and `predictions`.")
        return body

    def explain(self, name: str, data: bytes, mime_type: str | None) -> Explanation:
        """Where one image drives the model's answer (POST /explain); FileRejected when serving refuses the file."""
        files = {UPLOAD_FIELD: (name, data, mime_type or "application/octet-stream")}
        response = self._request("POST", EXPLAIN_ROUTE, self._predict_timeout, files=files)
        self._raise_for_unavailable(response, EXPLAIN_ROUTE)
        if response.status_code >= 400:
            raise FileRejected(f"The prediction service could not explain {name}: {_detail(response)}")
        try:
            return Explanation(
                response.content,
                float(response.headers[PROBABILITY_HEADER]),
                float(response.headers[LARGEST_CHANGE_HEADER]),
                response.headers[EXPLANATION_METHOD_HEADER],
            )
        except (KeyError, ValueError) as error:
            raise ServingUnavailable(f"The prediction service answered {EXPLAIN_ROUTE} without its headers ({error}).") from error

    def confirm_diagnosis(self, prediction_id: str, diagnosis: str, token: str) -> bool:
        """Record a confirmed diagnosis of an earlier prediction (POST /feedback with the bearer token);
        False when serving took it but dropped it (its prediction log's queue was full)."""
        response = self._request(
            "POST",
            "/feedback",
            self._timeout,
            json={"prediction_id": prediction_id, "diagnosis": diagnosis},
            headers={"Authorization": f"Bearer {token}"},
        )
        self._raise_for_unavailable(response, "/feedback")
        if response.status_code >= 400:
            raise ServingError(f"The prediction service did not record the diagnosis: {_detail(response)}")
        return self._json(response, "/feedback").get("status") == "queued"
