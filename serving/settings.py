"""Serving settings, read from the environment once at start so a restart picks up changes."""

import os
from dataclasses import dataclass
from pathlib import Path

from skin_cancer_contract.api import DEFAULT_MAX_FILES, DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_REQUEST_PIXELS, DEFAULT_MAX_UPLOAD_MB
from skin_cancer_contract.monitoring import local_storage_folder, storage_prefix
from skin_cancer_contract.registry import CHAMPION_URI


@dataclass(frozen=True)
class Settings:
    model_uri: str
    admin_token: str | None
    max_upload_bytes: int
    """Largest request body (all files together)."""
    max_files: int
    """Most images in one request."""
    max_image_pixels: int
    """Largest width x height of one image, checked on its header before any decode."""
    max_request_pixels: int
    """Most pixels of all the images of one request together, checked the same way."""
    max_batch: int
    """Most images one model call takes; larger requests are split, more queued requests wait."""
    batch_wait_s: float
    """How long a batch may wait for more requests while the server is under concurrent load."""
    predict_timeout_s: float
    """How long one model call may take before its requests are answered 503 (0: no limit)."""
    load_retry_max_s: float
    """Longest pause between attempts while no model has loaded yet (the pause doubles up to it)."""
    feedback_token: str | None
    """Bearer token of POST /feedback; without it the route answers 403."""
    log_enabled: bool
    """PREDICTION_LOG=off: nothing is recorded (no image facts computed, nothing written); the
    prediction log's routes (POST /feedback, GET /monitoring/recent) answer 403."""
    log_bucket: str | None
    """AWS_BUCKET: the prediction log goes to this bucket under `log_prefix`; else into `log_folder`."""
    log_prefix: str
    log_region: str | None
    """AWS_REGION of the bucket; unset: boto3's own default."""
    log_folder: Path
    log_capacity: int
    """Most records waiting to be written; more are dropped (and counted)."""
    log_batch: int
    """Most records per flush."""
    log_flush_s: float
    """Longest a record waits before its batch is flushed."""

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            model_uri=os.environ.get("MODEL_URI") or CHAMPION_URI,
            admin_token=os.environ.get("SERVING_ADMIN_TOKEN") or None,
            max_upload_bytes=int(_number("MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB) * 1024 * 1024),
            max_files=max(1, int(_number("MAX_FILES", DEFAULT_MAX_FILES))),
            max_image_pixels=int(_number("MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)),
            max_request_pixels=int(_number("MAX_REQUEST_PIXELS", DEFAULT_MAX_REQUEST_PIXELS)),
            max_batch=max(1, int(_number("SERVING_MAX_BATCH", 32))),
            batch_wait_s=_number("SERVING_BATCH_WAIT_MS", 2) / 1000,
            predict_timeout_s=_number("SERVING_PREDICT_TIMEOUT_S", 30),
            load_retry_max_s=_number("SERVING_LOAD_RETRY_MAX_S", 30),
            feedback_token=os.environ.get("SERVING_FEEDBACK_TOKEN") or None,
            log_enabled=_switch("PREDICTION_LOG", default=True),
            log_bucket=os.environ.get("AWS_BUCKET") or None,
            log_prefix=storage_prefix(os.environ),
            log_region=os.environ.get("AWS_REGION") or None,
            log_folder=local_storage_folder(os.environ),
            log_capacity=max(1, int(_number("PREDICTION_LOG_CAPACITY", 10_000))),
            log_batch=max(1, int(_number("PREDICTION_LOG_BATCH", 500))),
            log_flush_s=_number("PREDICTION_LOG_FLUSH_S", 5),
        )


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from None
    if value < 0:
        raise ValueError(f"environment variable {name}={raw!r} must not be negative")
    return value


def _switch(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("on", "off"):
        raise ValueError(f"environment variable {name}={raw!r} must be `on` or `off`")
    return raw == "on"
