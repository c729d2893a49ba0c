"""Prometheus metrics: requests by route and status, latency, batch sizes, the loaded version.

The HTTP metrics come from prometheus-fastapi-instrumentator, labelled by route template
(`none` for paths no route matches) and status code only: no label takes a value the client
chooses (such as the HTTP method), so a client cannot grow the metrics without bound.
"""

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator import metrics as http_metrics

REGISTRY = CollectorRegistry()

BATCH_SIZE = Histogram(
    "serving_batch_size", "Images per model call.", buckets=(1, 2, 4, 8, 16, 32, 64), registry=REGISTRY
)
QUEUED_IMAGES = Gauge("serving_queued_images", "Images waiting for a model call.", registry=REGISTRY)
MODEL_INFO = Gauge(
    "serving_model_info",
    "1 for the model version being served.",
    ["name", "version", "model_class"],
    registry=REGISTRY,
)
MODEL_LOADS = Counter("serving_model_loads_total", "Model loads by result.", ["result"], registry=REGISTRY)
MODEL_TIMEOUTS = Counter(
    "serving_model_timeouts_total", "Model calls abandoned after SERVING_PREDICT_TIMEOUT_S.", registry=REGISTRY
)
LOG_RECORDS_WRITTEN = Counter(
    "serving_log_records_written_total", "Prediction-log records written to storage, by kind.", ["kind"], registry=REGISTRY
)
LOG_RECORDS_DROPPED = Counter(
    "serving_log_records_dropped_total",
    "Prediction-log records dropped, by kind and reason (queue_full, storage_error, facts_error).",
    ["kind", "reason"],
    registry=REGISTRY,
)


def instrument(app: FastAPI) -> None:
    """Count and time every HTTP request under its route template (not the raw path)."""
    instrumentator = Instrumentator(
        should_group_status_codes=False,
        should_group_untemplated=True,
        excluded_handlers=["/metrics"],
        registry=REGISTRY,
    )
    instrumentator.add(
        http_metrics.requests(
            metric_name="serving_requests_total",
            metric_doc="HTTP requests answered, by route and status.",
            should_include_method=False,
            registry=REGISTRY,
        ),
        http_metrics.latency(
            metric_name="serving_request_duration_seconds",
            metric_doc="Time from request to the end of the response, by route.",
            should_include_method=False,
            should_include_status=False,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=REGISTRY,
        ),
    )
    instrumentator.instrument(app)


def record_load(model, error: str | None) -> None:
    """Called after each load attempt; keeps `serving_model_info` on the served version only."""
    MODEL_LOADS.labels("failure" if error else "success").inc()
    if model is not None:
        MODEL_INFO.clear()
        MODEL_INFO.labels(model.name, model.version, model.model_class or "").set(1)
