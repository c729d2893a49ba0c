"""The figures of the app's Production view, from serving's GET /monitoring/recent; plain Python."""

import math

from skin_cancer_contract.data import CLASSES, MALIGNANT

PROBABILITY_BINS = 10
MONITORING_ASSETS = ("production_predictions", "production_drift", "production_performance")
"""The Dagster assets of the day's figures, linked from the view (the app cannot reach Dagster)."""


def asset_links(dagster_ui_url: str) -> dict[str, str]:
    """Each monitoring asset's page in the Dagster UI."""
    return {name: f"{dagster_ui_url.rstrip('/')}/assets/{name}" for name in MONITORING_ASSETS}


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (`share` in [0, 1]); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def recent_figures(recent: list[dict]) -> dict:
    """Malignant share, latency p50 and p95, and the probabilities' histogram of the recent predictions."""
    latencies = [row["latency_ms"] for row in recent]
    counts = [0] * PROBABILITY_BINS
    for row in recent:
        counts[min(int(row["probability_malignant"] * PROBABILITY_BINS), PROBABILITY_BINS - 1)] += 1
    width = 1 / PROBABILITY_BINS
    return {
        "malignant_share": sum(row["label"] == CLASSES[MALIGNANT] for row in recent) / len(recent) if recent else None,
        "latency_p50_ms": percentile(latencies, 0.5),
        "latency_p95_ms": percentile(latencies, 0.95),
        "histogram": {
            "probability of malignant": [f"{i * width:.1f}–{(i + 1) * width:.1f}" for i in range(PROBABILITY_BINS)],
            "predictions": counts,
        },
    }
