"""Response bodies, so /docs shows what each route returns."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from skin_cancer_contract.monitoring import DIAGNOSES


class _Schema(BaseModel):
    model_config = ConfigDict(protected_namespaces=())  # fields named model_* are part of the API


class Error(_Schema):
    detail: str


class Health(_Schema):
    status: Literal["ok"]


class Ready(_Schema):
    ready: bool
    version: str | None = None
    reason: str | None = None
    fallback: str | None = None
    """Set when MODEL_URI could not be loaded and the last version loaded answers instead."""


class Limits(_Schema):
    """What one request may send (MAX_UPLOAD_MB, MAX_FILES, MAX_IMAGE_PIXELS, MAX_REQUEST_PIXELS)."""

    max_upload_mb: float
    max_files: int
    max_image_pixels: int
    max_request_pixels: int


class Info(_Schema):
    name: str
    version: str | None
    model_class: str | None
    model_uri: str
    limits: Limits


class ReloadStatus(_Schema):
    state: Literal["idle", "loading", "failed"]
    error: str | None
    requested_at: datetime | None


class ModelCard(_Schema):
    """What serving reports about a loaded model version."""

    name: str
    version: str
    model_class: str | None
    run_id: str | None
    metrics: dict[str, float]
    """The run's test_* metrics."""
    threshold: float
    """The served operating point: a probability of malignant from it is called malignant."""
    accuracy_threshold: float | None = None
    """The second operating point, the one that maximised validation accuracy (tag accuracy_threshold);
    reported, never served."""
    description: str | None = None
    """The version's MLflow description: its model card (use, limits, data, both operating points)."""
    image_size: int
    model_uri: str
    """The URI serving was asked to load (may name an alias)."""
    source_uri: str
    """The URI of the exact version that was loaded."""
    loaded_at: datetime


class ModelDetails(ModelCard):
    reload: ReloadStatus
    fallback: str | None = None
    """Set when MODEL_URI could not be loaded and this, the last version loaded, answers instead."""


class NoModel(Error):
    reload: ReloadStatus


class ModelRef(_Schema):
    name: str
    version: str
    model_class: str | None


class Prediction(_Schema):
    prediction_id: str
    """Names this prediction in POST /feedback."""
    filename: str
    label: Literal["benign", "malignant"]
    probability_malignant: float
    threshold: float
    model_version: str


class PredictResponse(_Schema):
    model: ModelRef
    predictions: list[Prediction]


class ReloadAccepted(_Schema):
    status: Literal["reloading"]
    model_uri: str


class Feedback(_Schema):
    """A dermatologist's confirmed diagnosis of one earlier prediction."""

    prediction_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")
    diagnosis: Literal[DIAGNOSES]


class FeedbackAccepted(_Schema):
    status: Literal["queued", "dropped"]
    prediction_id: str


class RecentPrediction(_Schema):
    time: datetime
    model_version: str
    probability_malignant: float
    label: Literal["benign", "malignant"]
    latency_ms: float
    """From the route's start to the answer, in the server."""


class RecentPredictions(_Schema):
    """What this serving process answered since it started; the day's figures are the Dagster
    assets' (production_predictions, production_drift, production_performance)."""

    started_at: datetime
    predictions: int
    """Predictions answered since start."""
    written: int
    """Of them, records the prediction log has written to storage."""
    dropped: int
    """Records it dropped (queue full, storage failing)."""
    recent: list[RecentPrediction]
    """The last ones, oldest first (at most RECENT_PREDICTIONS)."""
