"""The prediction log: every prediction and confirmed diagnosis, written off the request path.

A request only makes its records (id, probability, label) and hands them on: each image's facts
are computed in the decode pool while the answer is sent (the request does not wait for them),
then the records go on a bounded in-memory queue that a background thread flushes in batches,
one new JSON Lines file per flush and day, into the project's storage (see
skin_cancer_contract.monitoring for the layout). A full queue or failing storage never slows
or fails a request: the records are dropped, counted in /metrics and logged, and the count per
day, kind and reason is written under drops/ as soon as the storage takes it again, so the
day's figures say what they miss. No image bytes are kept, only their sha256, size and
per-channel statistics.
"""

import hashlib
import hmac
import logging
import os
import queue
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from serving.metrics import LOG_RECORDS_DROPPED, LOG_RECORDS_WRITTEN
from serving.schemas import RecentPrediction
from skin_cancer_contract.data import label_name
from skin_cancer_contract.monitoring import DROPS, PREDICTIONS, batch_key, channel_statistics, record_day, to_json_lines

log = logging.getLogger(__name__)
RECENT_PREDICTIONS = 1000
"""How many of the last predictions GET /monitoring/recent shows."""
RECENT_FIELDS = tuple(RecentPrediction.model_fields)
"""What it shows of each: no image facts, so the last predictions cost little memory."""


class LocalLogStore:
    """Files under a folder; each appears complete or not at all (written aside, then renamed)."""

    def __init__(self, root: Path):
        self.root = root

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __str__(self) -> str:
        return str(self.root)


class S3LogStore:
    """Objects under `s3://bucket/prefix/`; one PUT per file, so each appears complete or not at all."""

    def __init__(self, bucket: str, prefix: str, region: str | None = None):
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/")
        # Short timeouts and few retries: an unreachable store costs the flusher seconds, not minutes.
        config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
        self.client = boto3.client("s3", region_name=region, config=config)

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}" if self.prefix else key, Body=data)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


class PredictionLog:
    """A bounded queue of (kind, record) and the thread that flushes it into `store`."""

    def __init__(self, store, capacity: int, batch_size: int, flush_interval_s: float):
        self.store = store
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        """Set when a batch is ready (or the log stops): the writer sleeps until then, not woken per record."""
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._queue_full_warned = False
        self._unreported_drops: Counter = Counter()
        """(day, kind, reason) -> records dropped and not yet written under drops/."""
        self._drops_lock = threading.Lock()
        self.started_at = now_iso()
        self.recent: deque = deque(maxlen=RECENT_PREDICTIONS)
        """The RECENT_FIELDS of the last predictions answered, stored or not, for GET /monitoring/recent."""
        self.totals: Counter = Counter()
        """Prediction records since start: `submitted` (answered), `written`, `dropped`."""

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Flush what is queued (waiting at most `timeout_s`) and end the thread."""
        log.info("prediction log stopping: writing the %d records waiting", self._queue.qsize())
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)

    def answered(self, records: list[dict]) -> None:
        """Count predictions as they are answered and keep them for GET /monitoring/recent, before
        their facts are computed and they are submitted."""
        self.recent.extend({field: record[field] for field in RECENT_FIELDS} for record in records)
        self.totals["submitted"] += len(records)

    def submit(self, kind: str, records: list[dict]) -> bool:
        """Queue `records` without waiting; False (and counted, logged) when the queue is full."""
        for index, record in enumerate(records):
            try:
                self._queue.put_nowait((kind, record))
            except queue.Full:
                self.drop(kind, records[index:], "queue_full")
                return False
        if self._queue.qsize() >= self._batch_size:
            self._wake.set()
        return True

    def drop(self, kind: str, records: list[dict], reason: str) -> None:
        """Count, log and report records that will never be written."""
        for day, count in Counter(record_day(record) for record in records).items():
            self._drop(kind, day, count, reason)

    def _drop(self, kind: str, day: str, count: int, reason: str, error: Exception | None = None) -> None:
        LOG_RECORDS_DROPPED.labels(kind, reason).inc(count)
        with self._drops_lock:
            self._unreported_drops[day, kind, reason] += count
            if kind == PREDICTIONS:
                self.totals["dropped"] += count
        if error is not None:
            log.warning("dropped %d %s records: writing to %s failed: %s", count, kind, self.store, error)
        elif not self._queue_full_warned:  # once until the next successful write, not once per request
            self._queue_full_warned = True
            log.warning("dropping %s records: the prediction log's queue is full", kind)

    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            batch = self._next_batch()
            if batch:
                self._write(batch)
            self._report_drops()
        self._report_drops()

    def _next_batch(self) -> list[tuple[str, dict]]:
        """Up to `batch_size` records, once that many are queued or one flush interval has passed."""
        self._wake.wait(self._flush_interval_s)
        self._wake.clear()
        batch = []
        while len(batch) < self._batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if self._stop.is_set() or self._queue.qsize() >= self._batch_size:
            self._wake.set()  # more to write at once
        return batch

    def _write(self, batch: list[tuple[str, dict]]) -> None:
        groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for kind, record in batch:
            groups[kind, record_day(record)].append(record)
        for (kind, day), records in groups.items():
            try:
                self.store.put(batch_key(kind, day, datetime.now(timezone.utc)), to_json_lines(records))
            except Exception as error:  # any storage failure: drop, count, go on
                self._drop(kind, day, len(records), "storage_error", error)
            else:
                LOG_RECORDS_WRITTEN.labels(kind).inc(len(records))
                if kind == PREDICTIONS:
                    self.totals["written"] += len(records)
                self._queue_full_warned = False

    def _report_drops(self) -> None:
        """Write the drop counts not yet stored, one file per day; what fails stays for the next try."""
        with self._drops_lock:
            unreported, self._unreported_drops = self._unreported_drops, Counter()
        by_day: dict[str, list[dict]] = defaultdict(list)
        for (day, kind, reason), count in unreported.items():
            by_day[day].append({"time": now_iso(), "day": day, "kind": kind, "reason": reason, "count": count})
        for day, records in by_day.items():
            try:
                self.store.put(batch_key(DROPS, day, datetime.now(timezone.utc)), to_json_lines(records))
            except Exception:  # the storage is still failing: counted again at the next try
                with self._drops_lock:
                    self._unreported_drops.update({(day, r["kind"], r["reason"]): r["count"] for r in records})


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def file_facts(uploads: list[tuple[str, bytes]], sizes: list[tuple[int, int]], images: np.ndarray) -> list[dict]:
    """sha256, width and height (`sizes`, read from the headers) of each uploaded file, and the
    statistics of its decoded image; blocking, for the decode pool while the answer is sent."""
    return [
        {"sha256": hashlib.sha256(data).hexdigest(), "width": width, "height": height, **statistics}
        for (_, data), (width, height), statistics in zip(uploads, sizes, _image_statistics(images))
    ]


def pixel_facts(pixels: np.ndarray, images: np.ndarray) -> list[dict]:
    """sha256 of the raw pixels, width and height of each image of an (N, H, W, 3) uint8 batch, and
    the statistics of its resized image; blocking, like file_facts."""
    _, height, width, _ = pixels.shape
    return [
        {"sha256": hashlib.sha256(image.tobytes()).hexdigest(), "width": width, "height": height, **statistics}
        for image, statistics in zip(pixels, _image_statistics(images))
    ]


def _image_statistics(images: np.ndarray) -> list[dict]:
    """Per-channel mean and standard deviation of each decoded uint8 input, as the model receives it (resized)."""
    means, stds = channel_statistics(images)
    return [
        {"channel_mean": [round(float(v), 3) for v in mean], "channel_std": [round(float(v), 3) for v in std]}
        for mean, std in zip(means, stds)
    ]


ID_TAG_CHARS = 16


def new_prediction_id(key: str | None) -> str:
    """32 random hex digits, then (with a key) 16 of their HMAC: any replica with the key can tell
    an id it issued, after restarts too, without reading the log."""
    nonce = uuid.uuid4().hex
    return nonce + _id_tag(nonce, key) if key else nonce


def issued_prediction_id(prediction_id: str, key: str | None) -> bool:
    nonce, tag = prediction_id[:32], prediction_id[32:]
    return key is not None and len(tag) == ID_TAG_CHARS and hmac.compare_digest(tag, _id_tag(nonce, key))


def _id_tag(nonce: str, key: str) -> str:
    return hmac.new(key.encode(), f"prediction-id:{nonce}".encode(), hashlib.sha256).hexdigest()[:ID_TAG_CHARS]


def prediction_records(model, probabilities, received: float, id_key: str | None) -> list[dict]:
    """One record per image, each with a new prediction id (signed with `id_key`), without the image's
    facts (file_facts, pixel_facts, added later); `received`: `time.perf_counter()` when the request's
    handler started."""
    time_now = now_iso()
    latency_ms = round((time.perf_counter() - received) * 1000, 2)
    return [
        {
            "prediction_id": new_prediction_id(id_key),
            "time": time_now,
            "model_name": model.name,
            "model_version": model.version,
            "probability_malignant": float(probability),
            "label": label_name(probability, model.threshold),
            "threshold": model.threshold,
            "latency_ms": latency_ms,
        }
        for probability in probabilities
    ]


def prediction_log_for(settings) -> PredictionLog | None:
    """The log into the bucket when AWS_BUCKET is set, else into the state folder's storage; None
    when PREDICTION_LOG=off."""
    if not settings.log_enabled:
        return None
    if settings.log_bucket:
        store = S3LogStore(settings.log_bucket, settings.log_prefix, settings.log_region)
    else:
        store = LocalLogStore(settings.log_folder)
    return PredictionLog(store, settings.log_capacity, settings.log_batch, settings.log_flush_s)
