"""Serving settings, read from the environment once at start so a restart picks up changes."""

import math
import os
from dataclasses import dataclass
from pathlib import Path

from skin_cancer_contract.api import DEFAULT_MAX_FILES, DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_REQUEST_PIXELS, DEFAULT_MAX_UPLOAD_MB
from skin_cancer_contract.monitoring import local_storage_folder, state_folder, storage_prefix
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
    model_calls: int
    """Model calls at once: two keep the cores busy through each call's serial parts (serving.batcher)."""
    predict_timeout_s: float
    """How long one model call may take before its requests are answered 503 (0: no limit)."""
    load_retry_max_s: float
    """Longest pause between attempts while no model has loaded yet (the pause doubles up to it)."""
    feedback_token: str | None
    """Bearer token of POST /feedback; without it the route answers 403."""
    monitoring_token: str | None
    """Bearer token of GET /monitoring/*: SERVING_MONITORING_TOKEN, else the feedback token; none: 403."""
    prediction_id_key: str | None
    """Signs prediction ids so POST /feedback knows which ones this deployment issued (replicas and restarts
    included): SERVING_PREDICTION_ID_KEY, else the feedback token; none: ids are unsigned."""
    min_upload_rate_bytes_s: float
    """A body arriving slower than this (after `upload_grace_s`) is cut off with 408."""
    upload_grace_s: float
    max_in_flight: int
    """Most prediction requests (/predict, V2 infer) at once; more answer 503 before their body is read."""
    max_queued_images: int
    """Most images waiting for the model; a request that would queue more answers 503."""
    request_deadline_s: float
    """How long a prediction may wait for the model in all (queue and call) before it answers 503."""
    decode_threads: int
    """Images decoded at once: the CPUs this process may really use (affinity, cgroup cpu.max)."""
    last_model_file: Path
    """Where the last model version loaded is remembered, to serve it when MODEL_URI cannot be loaded."""
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
        feedback_token = os.environ.get("SERVING_FEEDBACK_TOKEN") or None
        max_batch = max(1, int(_number("SERVING_MAX_BATCH", 32)))
        cpus = available_cpus()
        return cls(
            model_uri=os.environ.get("MODEL_URI") or CHAMPION_URI,
            admin_token=os.environ.get("SERVING_ADMIN_TOKEN") or None,
            max_upload_bytes=int(_number("MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB) * 1024 * 1024),
            max_files=max(1, int(_number("MAX_FILES", DEFAULT_MAX_FILES))),
            max_image_pixels=int(_number("MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)),
            max_request_pixels=int(_number("MAX_REQUEST_PIXELS", DEFAULT_MAX_REQUEST_PIXELS)),
            max_batch=max_batch,
            batch_wait_s=_number("SERVING_BATCH_WAIT_MS", 2) / 1000,
            model_calls=max(1, int(_number("SERVING_MODEL_CALLS", 2))),
            predict_timeout_s=_number("SERVING_PREDICT_TIMEOUT_S", 30),
            load_retry_max_s=_number("SERVING_LOAD_RETRY_MAX_S", 30),
            feedback_token=feedback_token,
            monitoring_token=os.environ.get("SERVING_MONITORING_TOKEN") or feedback_token,
            prediction_id_key=os.environ.get("SERVING_PREDICTION_ID_KEY") or feedback_token,
            min_upload_rate_bytes_s=_number("SERVING_MIN_UPLOAD_RATE_KB_S", 50) * 1024,
            upload_grace_s=_number("SERVING_UPLOAD_GRACE_S", 5),
            max_in_flight=max(1, int(_number("SERVING_MAX_IN_FLIGHT", 4 * cpus))),
            max_queued_images=max(max_batch, int(_number("SERVING_MAX_QUEUED_IMAGES", 4 * max_batch))),
            request_deadline_s=_number("SERVING_REQUEST_DEADLINE_S", 60),
            decode_threads=cpus,
            last_model_file=Path(os.environ.get("SERVING_LAST_MODEL_FILE") or state_folder(os.environ) / "serving" / "last_model.json"),
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


def available_cpus(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The CPUs this process may use: its affinity, lowered to its cgroup v2 quota (a pod's CPU limit),
    not os.cpu_count(), which counts the node's cores."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return cpus
    if quota == "max":
        return cpus
    return max(1, min(cpus, math.ceil(int(quota) / int(period))))
