"""Serving settings, read from the environment once at start so a restart picks up changes."""

import os
from dataclasses import dataclass

from skin_cancer_contract.registry import CHAMPION_URI


@dataclass(frozen=True)
class Settings:
    model_uri: str
    admin_token: str | None
    max_upload_bytes: int
    max_batch: int
    """Most images one model call takes; more queued requests wait for the next call."""
    batch_wait_s: float
    """How long a batch may wait for more requests while the server is under concurrent load."""

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            model_uri=os.environ.get("MODEL_URI") or CHAMPION_URI,
            admin_token=os.environ.get("SERVING_ADMIN_TOKEN") or None,
            max_upload_bytes=int(_number("MAX_UPLOAD_MB", 10) * 1024 * 1024),
            max_batch=int(_number("SERVING_MAX_BATCH", 32)),
            batch_wait_s=_number("SERVING_BATCH_WAIT_MS", 2) / 1000,
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
