"""Response bodies, so /docs shows what each route returns."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


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


class Info(_Schema):
    name: str
    version: str | None
    model_class: str | None
    model_uri: str


class ReloadStatus(_Schema):
    state: Literal["idle", "loading", "failed"]
    error: str | None
    requested_at: datetime | None


class ModelDetails(_Schema):
    name: str
    version: str
    model_class: str | None
    run_id: str | None
    metrics: dict[str, float]
    threshold: float
    image_size: int
    model_uri: str
    source_uri: str
    loaded_at: datetime
    reload: ReloadStatus


class NoModel(Error):
    reload: ReloadStatus


class ModelRef(_Schema):
    name: str
    version: str
    model_class: str | None


class Prediction(_Schema):
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
