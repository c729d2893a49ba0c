"""Prometheus metrics: requests by route and status, latency, batch sizes, the loaded version."""

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

REQUESTS = Counter(
    "serving_requests_total", "HTTP requests answered.", ["route", "method", "status"], registry=REGISTRY
)
LATENCY = Histogram(
    "serving_request_duration_seconds",
    "Time from request to the end of the response.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "serving_batch_size", "Images per model call.", buckets=(1, 2, 4, 8, 16, 32, 64), registry=REGISTRY
)
MODEL_INFO = Gauge(
    "serving_model_info",
    "1 for the model version being served.",
    ["name", "version", "model_class"],
    registry=REGISTRY,
)
MODEL_LOADS = Counter("serving_model_loads_total", "Model loads by result.", ["result"], registry=REGISTRY)


def record_load(model, error: str | None) -> None:
    """Called after each load attempt; keeps `serving_model_info` on the served version only."""
    MODEL_LOADS.labels("failure" if error else "success").inc()
    if model is not None:
        MODEL_INFO.clear()
        MODEL_INFO.labels(model.name, model.version, model.model_class or "").set(1)


class MetricsMiddleware:
    """Counts and times every HTTP request under its route template (not the raw path)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = _route_label(scope)
            REQUESTS.labels(route, scope["method"], str(status)).inc()
            LATENCY.labels(route, scope["method"]).observe(time.perf_counter() - started)


def _route_label(scope) -> str:
    if "route" in scope:
        return scope["route"].path
    return scope["path"] if "endpoint" in scope else "unmatched"
