"""The production log's layout: what serving writes and the monitoring assets read.

Serving appends prediction and feedback records as JSON Lines files, one per flush, under
`predictions/date=YYYY-MM-DD/` and `feedback/date=YYYY-MM-DD/` of the project's storage: the
state folder's `storage/` on disk, or the bucket AWS_BUCKET under AWS_PREFIX, beside the assets.
Records it had to drop are counted under `drops/date=YYYY-MM-DD/` (the day of the dropped
records): {"time", "day", "kind", "reason", "count"}. The monitoring assets store each day's
drift report beside them, as `drift/date=YYYY-MM-DD/report.html`.
"""

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import numpy as np

from skin_cancer_contract.data import CLASSES

PREDICTIONS, FEEDBACK, DROPS = "predictions", "feedback", "drops"
KINDS = (PREDICTIONS, FEEDBACK, DROPS)
DRIFT_REPORTS = "drift"
"""Not a record kind: the folder of the drift reports (HTML) that the monitoring assets write."""
DEFAULT_STATE_FOLDER = "state"
"""SKIN_CANCER_STATE when unset, relative to the working directory."""
LOCAL_STORAGE_FOLDER = "storage"
"""The storage folder inside SKIN_CANCER_STATE."""
DEFAULT_S3_PREFIX = "dagster"
"""AWS_PREFIX when unset."""
DIAGNOSES = CLASSES
"""What a confirmed diagnosis may be."""


def state_folder(environ: Mapping[str, str]) -> Path:
    """The local state folder (storage, MLflow store, Dagster home of the embedded defaults):
    SKIN_CANCER_STATE of `environ`, else ./state, as an absolute path."""
    return Path(environ.get("SKIN_CANCER_STATE") or DEFAULT_STATE_FOLDER).resolve()


def local_storage_folder(environ: Mapping[str, str]) -> Path:
    """Where the assets and serving's log are stored without AWS_BUCKET: the state folder's `storage/`."""
    return state_folder(environ) / LOCAL_STORAGE_FOLDER


def storage_prefix(environ: Mapping[str, str]) -> str:
    """Where in the bucket AWS_BUCKET the assets and serving's log are stored: AWS_PREFIX of `environ`."""
    return environ.get("AWS_PREFIX", DEFAULT_S3_PREFIX)


def partition_prefix(kind: str, day: str) -> str:
    """`predictions/date=2026-11-29/`: every record of one kind written on one UTC day."""
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}: choose one of {', '.join(KINDS)}")
    return _day_folder(kind, day)


def drift_report_key(day: str) -> str:
    """`drift/date=2026-11-29/report.html`: the drift report of one UTC day, beside its records."""
    return f"{_day_folder(DRIFT_REPORTS, day)}report.html"


def _day_folder(folder: str, day: str) -> str:
    return f"{folder}/date={day}/"


def batch_key(kind: str, day: str, written_at: datetime) -> str:
    """A new, unique file for one flush of one day's records (the day of the records' own time)."""
    return f"{partition_prefix(kind, day)}{written_at.strftime('%H%M%S%f')}-{uuid.uuid4().hex[:12]}.jsonl"


def record_day(record: dict) -> str:
    """The UTC day a record belongs to: the date of its ISO `time`."""
    return record["time"][:10]


def to_json_lines(records: list[dict]) -> bytes:
    return "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records).encode()


REQUIRED_FIELDS = {
    PREDICTIONS: ("prediction_id", "time", "model_version", "label", "probability_malignant", "channel_mean", "channel_std"),
    FEEDBACK: ("prediction_id", "diagnosis", "time"),
    DROPS: ("kind", "reason", "count"),
}
"""What the monitoring assets read of each kind: a record lacking one of them is malformed."""


def from_json_lines(data: bytes, kind: str, where: str) -> tuple[list[dict], list[str]]:
    """The records of one flushed file, and why each malformed line was skipped (naming the file and line).

    A line that is not a JSON object with the fields of `kind` is skipped rather than fatal: one torn or
    foreign line must not hide a whole day of records."""
    records, malformed = [], []
    for number, line in enumerate(data.decode(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            malformed.append(f"{where} line {number} is not JSON: {error}")
            continue
        missing = [name for name in REQUIRED_FIELDS[kind] if name not in record] if isinstance(record, dict) else None
        if missing is None:
            malformed.append(f"{where} line {number} is not a JSON object")
        elif missing:
            malformed.append(f"{where} line {number} lacks {', '.join(missing)}")
        else:
            records.append(record)
    return records, malformed


STATS_STRIDE = 4
"""Image statistics are taken on every 4th row and column: 1/16 of the pixels, ~0.2 ms a 224 px image."""


def channel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image, per-channel mean and standard deviation of an (N, H, W, 3) uint8 batch, each (N, 3).

    Serving logs them for each prediction; the drift asset computes the same on the training set.
    """
    sample = images[:, ::STATS_STRIDE, ::STATS_STRIDE].reshape(len(images), -1, 3).astype(np.float32)
    return sample.mean(axis=1), sample.std(axis=1)
