"""Drift as production.py decides it, through a real Evidently report, on data whose answer is known."""

import numpy as np
import pytest
from scipy.stats import ks_2samp

from skin_cancer_assets.production import DRIFT_P_VALUE, MIN_DRIFT_SAMPLES, STATISTICS, drift, probability_column

TRAINING_MEANS = [150, 110, 100, 40, 35, 30]
"""Typical per-channel means and spreads (R, G, B) of a dermoscopy image's pixels."""


def _served(statistics: np.ndarray, version: str = "3", probabilities=None) -> list[dict]:
    """Prediction records as serving logs them, one per row of (N, 6) image statistics."""
    probabilities = np.full(len(statistics), 0.3) if probabilities is None else probabilities
    return [
        {"channel_mean": list(row[:3]), "channel_std": list(row[3:]), "model_version": version, "probability_malignant": float(p)}
        for row, p in zip(statistics, probabilities)
    ]


def _no_validation_outputs(version: str) -> None:
    return None


def test_darker_images_drift_and_images_like_the_training_set_do_not():
    rng = np.random.default_rng(0)
    training = rng.normal(TRAINING_MEANS, 12, size=(400, 6))
    darker_statistics = rng.normal(TRAINING_MEANS, 12, size=(60, 6)) * [0.6, 0.6, 0.6, 1, 1, 1]
    alike = drift(training, _no_validation_outputs, _served(rng.normal(TRAINING_MEANS, 12, size=(60, 6))))
    darker = drift(training, _no_validation_outputs, _served(darker_statistics))

    assert alike.images["drifted"] is False and alike.images["drifted_statistics"] == []
    assert all(test["p_value"] > DRIFT_P_VALUE for test in alike.images["tests"].values()), alike.images["tests"]
    assert darker.images["drifted"] is True
    assert darker.images["drifted_statistics"] == ["channel_mean_r", "channel_mean_g", "channel_mean_b"]
    red = darker.images["tests"]["channel_mean_r"]
    assert red["p_value"] < DRIFT_P_VALUE and red["production_median"] < 0.7 * red["reference_median"]
    assert red["p_value"] == pytest.approx(ks_2samp(training[:, 0], darker_statistics[:, 0]).pvalue)  # the test as before: scipy's two-sample KS
    for report in (alike.report_html, darker.report_html):
        assert "drawDashboard(" in report  # Evidently's standalone HTML
        assert all(f"Value Drift for column {name}" in report for name in STATISTICS)


def test_probability_drift_compares_each_version_with_its_own_validation_outputs():
    rng = np.random.default_rng(0)
    validation = {"3": list(rng.beta(2, 5, 200)), "4": list(rng.beta(2, 5, 200))}
    statistics = rng.normal(TRAINING_MEANS, 12, size=(210, 6))
    served = _served(statistics[:100], "3", rng.beta(2, 5, 100))
    served += _served(statistics[100:200], "4", rng.beta(5, 2, 100))  # skewed to malignant
    served += _served(statistics[200:], "5", np.full(10, 0.5))
    found = drift(statistics, validation.get, served)
    verdicts = found.probabilities
    assert verdicts["3"]["drifted"] is False and verdicts["3"]["p_value"] > DRIFT_P_VALUE
    assert verdicts["4"]["drifted"] is True and verdicts["4"]["p_value"] < DRIFT_P_VALUE
    assert verdicts["4"]["production_median"] > verdicts["4"]["reference_median"]
    assert (verdicts["4"]["samples"], verdicts["4"]["reference_samples"]) == (100, 200)
    assert verdicts["5"] == {"samples": 10, "reference_samples": 0, "drifted": None, "reason": "version 5 logged no validation probabilities"}
    assert all(f"Value Drift for column {probability_column(version)}" in found.report_html for version in ("3", "4"))


def test_too_few_samples_give_reasons_and_no_report():
    rng = np.random.default_rng(0)
    few = _served(rng.normal(TRAINING_MEANS, 12, size=(MIN_DRIFT_SAMPLES - 1, 6)))
    found = drift(rng.normal(TRAINING_MEANS, 12, size=(50, 6)), lambda version: list(rng.beta(2, 5, 50)), few)
    assert found.images == {"samples": MIN_DRIFT_SAMPLES - 1, "drifted": None, "reason": f"fewer than {MIN_DRIFT_SAMPLES} predictions", "tests": {}}
    assert found.probabilities["3"] == {
        "samples": MIN_DRIFT_SAMPLES - 1, "reference_samples": 50, "drifted": None,
        "reason": f"fewer than {MIN_DRIFT_SAMPLES} predictions or validation probabilities",
    }
    assert found.report_html is None
