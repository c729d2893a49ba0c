"""Figures of the served model in production, from serving's prediction log; plain Python, no Dagster.

Confirmed diagnoses (feedback) are joined to predictions by prediction id; every confirmation
is kept, repeats that agree count once, and a prediction whose confirmations disagree is a
conflict: counted, and left out of the figures, since its truth is in dispute. Proportions come with Wilson 95 % intervals, which stay
inside [0, 1] and are honest for the small counts feedback usually has. Drift compares the
image statistics serving logs with the same statistics of the training images, and each served
version's probabilities with its own outputs on its validation images, in one Evidently report:
its two-sample Kolmogorov-Smirnov tests give the verdicts and p-values, and its HTML shows them.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

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
    """Per model version: accuracy, malignant recall and specificity on the confirmed predictions,
    with how many confirmations its predictions got and how many of them are in conflict.

    A version with fewer than `min_confirmed` confirmed predictions gets its count and a
    `reason` instead of figures: a handful of confirmations says little.
    """
    diagnoses_of: dict[str, list[str]] = defaultdict(list)
    for record in feedback:
        diagnoses_of[record["prediction_id"]].append(record["diagnosis"])
    confirmed: dict[str, list[tuple[str, str]]] = defaultdict(list)
    predicted, confirmations, conflicts = Counter(), Counter(), Counter()
    for record in predictions:
        version, diagnoses = str(record["model_version"]), diagnoses_of.get(record["prediction_id"], [])
        predicted[version] += 1
        confirmations[version] += len(diagnoses)
        if len(set(diagnoses)) > 1:
            conflicts[version] += 1
        elif diagnoses:
            confirmed[version].append((record["label"], diagnoses[0]))
    figures = {}
    for version in sorted(predicted):
        pairs = confirmed[version]
        entry = {
            "predictions": predicted[version], "confirmed": len(pairs),
            "confirmations": confirmations[version], "conflicts": conflicts[version],
        }
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
    lines = ["| model version | predictions | confirmed | conflicts | accuracy | malignant recall | specificity |", "|---|---|---|---|---|---|---|"]
    for version, entry in figures.items():
        if "reason" in entry:
            cells = [entry["reason"], "", ""]
        else:
            cells = [_cell(entry[name]) for name in ("accuracy", "recall_malignant", "specificity")]
        lines.append(f"| {version} | {entry['predictions']} | {entry['confirmed']} | {entry['conflicts']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(proportion: dict) -> str:
    if proportion["value"] is None:
        return "no cases"
    low, high = proportion["ci95"]
    return f"{proportion['value']:.3f} ({low:.3f}–{high:.3f}, n={proportion['total']})"


STATISTICS = [f"channel_{kind}_{channel}" for kind in ("mean", "std") for channel in ("r", "g", "b")]
DRIFT_METHOD = "ks"
"""Evidently's two-sample Kolmogorov-Smirnov test, named rather than left to Evidently's choice by sample size."""
DRIFT_P_VALUE = 0.01
"""A figure has drifted when the test's p-value is at or below this level (Evidently's default for KS is 0.05)."""
MIN_DRIFT_SAMPLES = 5


def statistics_table(means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """(N, 6) columns in the order of STATISTICS."""
    return np.concatenate([np.asarray(means, dtype=np.float64), np.asarray(stds, dtype=np.float64)], axis=1)


@dataclass
class Drift:
    """One day's drift: the image statistics' verdict and each served version's, and the Evidently
    report (HTML) they were read from; None when no figure had enough samples to be tested."""

    images: dict
    probabilities: dict[str, dict]
    report_html: str | None


def drift(reference_statistics: np.ndarray, validation_probabilities_of, predictions: list[dict]) -> Drift:
    """Whether the day's images still look like the training images, statistic by statistic, and
    each served version's probabilities like its own outputs on its validation images.

    `reference_statistics`: the training set's `statistics_table`; `validation_probabilities_of(version)`:
    those outputs, or None when the version has none. Too few samples give a reason, not a verdict.
    """
    served, reference = {}, {}  # the columns to test: the day's values and what they are compared with
    images = {"samples": len(predictions)}
    if len(predictions) < MIN_DRIFT_SAMPLES:
        images |= {"drifted": None, "reason": f"fewer than {MIN_DRIFT_SAMPLES} predictions", "tests": {}}
    else:
        production = statistics_table([r["channel_mean"] for r in predictions], [r["channel_std"] for r in predictions])
        for column, name in enumerate(STATISTICS):
            served[name], reference[name] = production[:, column], reference_statistics[:, column]
    probabilities = {}
    for version, probabilities_served in sorted(_probabilities_by_version(predictions).items()):
        validation = validation_probabilities_of(version)
        entry = {"samples": len(probabilities_served), "reference_samples": len(validation) if validation is not None else 0}
        if validation is None:
            entry |= {"drifted": None, "reason": f"version {version} logged no validation probabilities"}
        elif min(len(probabilities_served), len(validation)) < MIN_DRIFT_SAMPLES:
            entry |= {"drifted": None, "reason": f"fewer than {MIN_DRIFT_SAMPLES} predictions or validation probabilities"}
        else:
            served[probability_column(version)], reference[probability_column(version)] = probabilities_served, validation
        probabilities[version] = entry
    if not served:
        return Drift(images, probabilities, report_html=None)

    tests, report_html = drift_tests(served, reference)
    if "reason" not in images:
        drifted = [name for name in STATISTICS if tests[name]["drifted"]]
        images |= {"drifted": bool(drifted), "drifted_statistics": drifted, "tests": {name: tests[name] for name in STATISTICS}}
    for version, entry in probabilities.items():
        if "reason" not in entry:
            entry |= tests[probability_column(version)]
    return Drift(images, probabilities, report_html)


def _probabilities_by_version(predictions: list[dict]) -> dict[str, list[float]]:
    by_version: dict[str, list[float]] = defaultdict(list)
    for record in predictions:
        by_version[str(record["model_version"])].append(record["probability_malignant"])
    return by_version


def probability_column(version: str) -> str:
    """The column of a version's probabilities in the drift report."""
    return f"probability_malignant_v{version}"


def drift_tests(served: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> tuple[dict[str, dict], str]:
    """One Evidently report with a drift test of each column, the day's values against their
    reference: each column's p-value, verdict and medians, and the report's HTML.

    Columns differ in length (the day's images, one version's predictions); the tables pad them
    with NaN, which Evidently drops column by column before it tests.
    """
    from evidently import DataDefinition, Dataset, Report  # here: every run process imports the code location, and Evidently takes seconds
    from evidently.metrics import ValueDrift

    definition = DataDefinition(numerical_columns=list(served))

    def table(columns: dict) -> Dataset:
        frame = pd.DataFrame({name: pd.Series(values, dtype="float64") for name, values in columns.items()})
        return Dataset.from_pandas(frame, data_definition=definition)

    report = Report([ValueDrift(column=name, method=DRIFT_METHOD, threshold=DRIFT_P_VALUE) for name in served], include_tests=True)
    snapshot = report.run(current_data=table(served), reference_data=table(reference))
    results = snapshot.dict()
    p_values = {metric["config"]["column"]: float(metric["value"]) for metric in results["metrics"]}  # KS's drift score is its p-value
    drifted = {test["metric_config"]["params"]["column"]: test["status"] == "FAIL" for test in results["tests"]}  # a drift test fails on drift
    tests = {
        name: {
            "p_value": p_values[name],
            "drifted": drifted[name],
            "reference_median": float(np.median(reference[name])),
            "production_median": float(np.median(served[name])),
        }
        for name in served
    }
    return tests, snapshot.get_html_str(as_iframe=False)
