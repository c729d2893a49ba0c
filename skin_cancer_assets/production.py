"""Figures of the served model in production, from serving's prediction log; plain Python, no Dagster.

Confirmed diagnoses (feedback) are joined to predictions by prediction id; the last
confirmation of a prediction counts. Proportions come with Wilson 95 % intervals, which stay
inside [0, 1] and are honest for the small counts feedback usually has. Drift compares the
image statistics serving logs with the same statistics of the training images, and each served
version's probabilities with its own outputs on its validation images, by two-sample
Kolmogorov-Smirnov tests (scipy's).
"""

from collections import Counter, defaultdict

import numpy as np

from skin_cancer_contract.data import CLASSES, MALIGNANT
from skin_cancer_contract.evaluation import wilson_interval
from skin_cancer_contract.monitoring import PREDICTIONS

MALIGNANT_NAME, BENIGN_NAME = CLASSES[MALIGNANT], CLASSES[1 - MALIGNANT]


def prediction_summary(predictions: list[dict], drops: list[dict]) -> dict:
    """Count, count by model version, malignant rate and server-side latency of one day's
    predictions, and how many serving dropped (its drop counts of that day, by reason)."""
    malignant = sum(1 for record in predictions if record["label"] == MALIGNANT_NAME)
    latencies = [record["latency_ms"] for record in predictions if "latency_ms" in record]  # older records have none
    dropped: Counter = Counter()
    for record in drops:
        if record["kind"] == PREDICTIONS:
            dropped[record["reason"]] += record["count"]
    return {
        "count": len(predictions),
        "by_model_version": dict(sorted(Counter(str(record["model_version"]) for record in predictions).items())),
        "malignant_rate": malignant / len(predictions) if predictions else None,
        "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies else None,
        "latency_p95_ms": float(np.percentile(latencies, 95)) if latencies else None,
        "dropped_records": sum(dropped.values()),
        "dropped_by_reason": dict(sorted(dropped.items())),
    }


def _proportion(successes: int, total: int) -> dict:
    interval = wilson_interval(successes, total)
    return {
        "value": successes / total if total else None,
        "successes": successes,
        "total": total,
        "ci95": list(interval) if interval else None,
    }


def performance(predictions: list[dict], feedback: list[dict], min_confirmed: int) -> dict[str, dict]:
    """Per model version: accuracy, malignant recall and specificity on the confirmed predictions.

    A version with fewer than `min_confirmed` confirmed predictions gets its count and a
    `reason` instead of figures: a handful of confirmations says little.
    """
    diagnosis_of = {record["prediction_id"]: record["diagnosis"] for record in sorted(feedback, key=lambda r: r["time"])}
    confirmed: dict[str, list[tuple[str, str]]] = defaultdict(list)
    predicted: Counter = Counter()
    for record in predictions:
        version = str(record["model_version"])
        predicted[version] += 1
        if record["prediction_id"] in diagnosis_of:
            confirmed[version].append((record["label"], diagnosis_of[record["prediction_id"]]))
    figures = {}
    for version in sorted(predicted):
        pairs = confirmed[version]
        entry = {"predictions": predicted[version], "confirmed": len(pairs)}
        if len(pairs) < min_confirmed:
            entry["reason"] = f"only {len(pairs)} confirmed diagnoses, fewer than the {min_confirmed} needed to show figures"
        else:
            malignant = [label for label, truth in pairs if truth == MALIGNANT_NAME]
            benign = [label for label, truth in pairs if truth == BENIGN_NAME]
            entry["accuracy"] = _proportion(sum(label == truth for label, truth in pairs), len(pairs))
            entry["recall_malignant"] = _proportion(malignant.count(MALIGNANT_NAME), len(malignant))
            entry["specificity"] = _proportion(benign.count(BENIGN_NAME), len(benign))
        figures[version] = entry
    return figures


def performance_table(figures: dict[str, dict]) -> str:
    """A Markdown table of `performance`: each figure with its interval, or why it is not shown."""
    lines = ["| model version | predictions | confirmed | accuracy | malignant recall | specificity |", "|---|---|---|---|---|---|"]
    for version, entry in figures.items():
        if "reason" in entry:
            cells = [entry["reason"], "", ""]
        else:
            cells = [_cell(entry[name]) for name in ("accuracy", "recall_malignant", "specificity")]
        lines.append(f"| {version} | {entry['predictions']} | {entry['confirmed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(proportion: dict) -> str:
    if proportion["value"] is None:
        return "no cases"
    low, high = proportion["ci95"]
    return f"{proportion['value']:.3f} ({low:.3f}–{high:.3f}, n={proportion['total']})"


STATISTICS = [f"channel_{kind}_{channel}" for kind in ("mean", "std") for channel in ("r", "g", "b")]
DRIFT_P_VALUE = 0.01
"""A statistic has drifted when a two-sample Kolmogorov-Smirnov test rejects the training distribution at this level."""
MIN_DRIFT_SAMPLES = 5


def statistics_table(means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """(N, 6) columns in the order of STATISTICS."""
    return np.concatenate([np.asarray(means, dtype=np.float64), np.asarray(stds, dtype=np.float64)], axis=1)


def image_drift(reference: np.ndarray, predictions: list[dict], p_value: float = DRIFT_P_VALUE) -> dict:
    """Whether the day's images still look like the training images, statistic by statistic.

    `reference`: the training set's `statistics_table`. Too few predictions give no verdict.
    """
    if len(predictions) < MIN_DRIFT_SAMPLES:
        return {"samples": len(predictions), "drifted": None, "reason": f"fewer than {MIN_DRIFT_SAMPLES} predictions", "tests": {}}
    production = statistics_table([r["channel_mean"] for r in predictions], [r["channel_std"] for r in predictions])
    tests = {name: ks_test(reference[:, column], production[:, column], p_value) for column, name in enumerate(STATISTICS)}
    drifted = sorted(name for name, test in tests.items() if test["drifted"])
    return {"samples": len(predictions), "drifted": bool(drifted), "drifted_statistics": drifted, "p_value": p_value, "tests": tests}


def probability_drift(reference_of, predictions: list[dict], p_value: float = DRIFT_P_VALUE) -> dict[str, dict]:
    """Per served model version: whether its probabilities of the day still look like its own
    outputs on its validation images. `reference_of(version)`: those outputs, or None when the
    version has none; a version with too few predictions or references gets a reason instead."""
    served: dict[str, list[float]] = defaultdict(list)
    for record in predictions:
        served[str(record["model_version"])].append(record["probability_malignant"])
    verdicts = {}
    for version, probabilities in sorted(served.items()):
        reference = reference_of(version)
        entry = {"samples": len(probabilities), "reference_samples": len(reference) if reference is not None else 0}
        if reference is None:
            entry |= {"drifted": None, "reason": f"version {version} logged no validation probabilities"}
        elif min(len(probabilities), len(reference)) < MIN_DRIFT_SAMPLES:
            entry |= {"drifted": None, "reason": f"fewer than {MIN_DRIFT_SAMPLES} predictions or validation probabilities"}
        else:
            entry |= ks_test(np.asarray(reference, dtype=np.float64), np.asarray(probabilities, dtype=np.float64), p_value)
        verdicts[version] = entry
    return verdicts


def ks_test(reference: np.ndarray, production: np.ndarray, p_value: float) -> dict:
    """Two-sample Kolmogorov-Smirnov test of one figure: production against its reference."""
    from scipy.stats import ks_2samp  # here: every run process imports the code location, deploys too

    result = ks_2samp(reference, production)
    return {
        "ks_statistic": float(result.statistic),
        "p_value": float(result.pvalue),
        "reference_median": float(np.median(reference)),
        "production_median": float(np.median(production)),
        "drifted": bool(result.pvalue < p_value),
    }
