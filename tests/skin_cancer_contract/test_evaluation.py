"""The shared evaluation on real numbers: the threshold for a recall and its margin, the metrics, the
Wilson interval, the split digest."""

import numpy as np
import pytest

from skin_cancer_contract.evaluation import (
    evaluate,
    mcnemar,
    paired_bootstrap_roc_auc,
    paired_roc_auc_difference,
    split_digest,
    threshold_for_recall,
    wilson_interval,
)


def test_threshold_reaches_the_target_recall_on_validation_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    probs = np.clip(labels * 0.3 + rng.random(400) * 0.7, 0, 1).astype(np.float32)
    threshold = threshold_for_recall(labels, probs, 0.9)
    metrics = evaluate(labels, probs, threshold)
    assert metrics["recall_malignant"] >= 0.9
    # the highest such threshold: a hair higher loses the target
    assert evaluate(labels, probs, threshold + 1e-6)["recall_malignant"] < 0.9


def test_a_threshold_with_a_margin_keeps_the_recall_s_lower_bound_at_the_target():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    probs = np.clip(labels * 0.3 + rng.random(400) * 0.7, 0, 1).astype(np.float32)
    plain = threshold_for_recall(labels, probs, 0.9)
    guarded = threshold_for_recall(labels, probs, 0.9, confidence=0.95)
    assert guarded < plain  # the margin costs malignant images caught on validation, never the reverse
    z = 1.644854  # one-sided 95 %
    caught = evaluate(labels, probs, guarded)
    positives = caught["true_positives"] + caught["false_negatives"]
    assert wilson_interval(caught["true_positives"], positives, z)[0] >= 0.9
    one_fewer = wilson_interval(caught["true_positives"] - 1, positives, z)[0]
    assert one_fewer < 0.9  # the highest such threshold
    assert evaluate(labels, probs, guarded)["specificity"] < evaluate(labels, probs, plain)["specificity"]


def test_too_few_malignant_images_for_the_margin_catch_every_one():
    labels = np.array([0, 0, 1, 1, 1])
    probs = np.array([0.1, 0.7, 0.9, 0.6, 0.3])
    assert threshold_for_recall(labels, probs, 0.9, confidence=0.95) == pytest.approx(0.3)
    assert threshold_for_recall(labels, probs, 0.9) == pytest.approx(0.3)
    assert threshold_for_recall(labels, probs, 0.6) == pytest.approx(0.6)


def test_wilson_interval_matches_the_textbook_figures():
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 0) is None
    assert wilson_interval(5, 5)[1] == 1.0
    assert wilson_interval(3, 10, z=0.0) == pytest.approx((0.3, 0.3))  # no confidence: the proportion itself


def test_evaluate_counts_the_confusion_matrix():
    labels = np.array([0, 0, 0, 1, 1])
    probs = np.array([0.1, 0.6, 0.2, 0.9, 0.4])
    m = evaluate(labels, probs, 0.5)
    assert (m["true_negatives"], m["false_positives"], m["false_negatives"], m["true_positives"]) == (2, 1, 1, 1)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["recall_malignant"] == pytest.approx(0.5)
    assert m["roc_auc"] == pytest.approx(5 / 6)


def test_split_digest_changes_with_the_images_and_the_labels():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    labels = np.array([0, 1] * 5)
    digest = split_digest(images, labels)
    assert split_digest(images.copy(), labels.copy()) == digest
    assert split_digest(images, labels[::-1].copy()) != digest
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    assert split_digest(changed, labels) != digest


def test_split_digest_sees_every_image_of_a_large_split():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (527, 8, 8, 3), dtype=np.uint8)  # the size of the real validation split
    labels = np.array([0, 1] * 263 + [0])
    digest = split_digest(images, labels)
    for row in (1, 263, 526):  # one image swapped for another, anywhere in the split
        changed = images.copy()
        changed[row] = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        assert split_digest(changed, labels) != digest


def test_the_paired_roc_auc_difference_is_sklearns_and_its_error_matches_a_paired_bootstrap():
    from sklearn.metrics import roc_auc_score

    from skin_cancer_contract.evaluation import paired_roc_auc_difference

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    shared = rng.normal(0, 1, 400)  # what both models see in an image: pairing cancels it
    first, second = labels + shared + rng.normal(0, 0.5, 400), labels + shared + rng.normal(0, 0.8, 400)
    difference, error = paired_roc_auc_difference(labels, first, second)
    assert difference == pytest.approx(roc_auc_score(labels, first) - roc_auc_score(labels, second), abs=1e-12)
    resampled = []
    for _ in range(1000):
        rows = rng.integers(0, 400, 400)
        resampled.append(roc_auc_score(labels[rows], first[rows]) - roc_auc_score(labels[rows], second[rows]))
    assert error == pytest.approx(np.std(resampled), rel=0.15)
    first_alone = [roc_auc_score(labels[rows], first[rows]) for rows in (rng.integers(0, 400, 400) for _ in range(300))]
    assert error < np.sqrt(2) * np.std(first_alone)  # unpaired errors of two such models would add up; paired, the shared part cancels


def test_identical_scores_differ_by_nothing_and_too_few_images_are_refused():
    from skin_cancer_contract.evaluation import paired_roc_auc_difference

    labels, scores = np.array([0, 1] * 10), np.linspace(0, 1, 20)
    assert paired_roc_auc_difference(labels, scores, scores) == (0.0, 0.0)
    with pytest.raises(ValueError, match="two images of each class, got 1 malignant and 3 benign"):
        paired_roc_auc_difference(np.array([0, 0, 0, 1]), np.ones(4), np.ones(4))


def test_the_accuracy_threshold_makes_the_most_correct_calls():
    from skin_cancer_contract.evaluation import threshold_for_accuracy

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    probs = np.clip(labels * 0.35 + rng.random(300) * 0.65, 0, 1)
    best = threshold_for_accuracy(labels, probs)
    accuracy = {t: evaluate(labels, probs, t)["accuracy"] for t in np.unique(probs)}
    assert accuracy[best] == max(accuracy.values())
    assert best == min(t for t, a in accuracy.items() if a == accuracy[best])


def test_every_figure_comes_with_a_95_percent_interval_that_narrows_with_more_images():
    from skin_cancer_contract.evaluation import with_intervals

    rng = np.random.default_rng(4)
    widths = []
    for count in (100, 1600):
        labels = rng.integers(0, 2, count)
        probs = np.clip(labels * 0.3 + rng.random(count) * 0.7, 0, 1)
        figures = with_intervals(labels, probs, 0.5)
        for name in ("accuracy", "recall_malignant", "specificity", "roc_auc"):
            assert figures[f"{name}_low"] < figures[name] < figures[f"{name}_high"], name
        low, high = wilson_interval(figures["true_positives"], figures["true_positives"] + figures["false_negatives"])
        assert (figures["recall_malignant_low"], figures["recall_malignant_high"]) == (low, high)
        widths.append(figures["roc_auc_high"] - figures["roc_auc_low"])
    assert widths[1] < widths[0] / 3  # about 1/sqrt(16) as wide


def _calls(a_only: int, b_only: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two models' calls with the given counts of images each gets right."""
    labels = np.array([1, 0] * (a_only + b_only + both + neither))[: a_only + b_only + both + neither]
    right_a = np.array([True] * a_only + [False] * b_only + [True] * both + [False] * neither)
    right_b = np.array([False] * a_only + [True] * b_only + [True] * both + [False] * neither)
    return labels, np.where(right_a, labels, 1 - labels), np.where(right_b, labels, 1 - labels)


def test_mcnemar_exact_on_few_discordant_images():
    # 1 against 5 discordant: P(X <= 1), X ~ Bin(6, 1/2), is 7/64; two-sided 14/64
    result = mcnemar(*_calls(1, 5, 40, 3))
    assert (result["a_only"], result["b_only"], result["method"]) == (1, 5, "exact")
    assert result["p_value"] == pytest.approx(14 / 64)
    assert mcnemar(*_calls(0, 6, 10, 0))["p_value"] == pytest.approx(2 / 64)
    assert mcnemar(*_calls(3, 3, 10, 0))["p_value"] == 1.0  # capped: the two tails overlap
    assert mcnemar(*_calls(0, 0, 10, 2))["p_value"] == 1.0


def test_mcnemar_chi_square_on_many_discordant_images():
    # (|30 - 10| - 1)^2 / 40 = 9.025; the chi-square tail at 1 degree of freedom is 0.002663
    result = mcnemar(*_calls(30, 10, 100, 5))
    assert (result["a_only"], result["b_only"], result["method"]) == (30, 10, "chi-square")
    assert result["p_value"] == pytest.approx(0.002663, abs=2e-6)


def test_paired_bootstrap_agrees_with_delong():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    strong = labels * 1.2 + rng.normal(size=500)
    weak = labels * 0.5 + rng.normal(size=500) + 0.3 * strong  # correlated, as two models on the same images are
    result = paired_bootstrap_roc_auc(labels, strong, weak, draws=1000, seed=0)
    difference, error = paired_roc_auc_difference(labels, strong, weak)
    assert result["difference"] == pytest.approx(difference, abs=1e-12)  # the same point estimate
    assert result["low"] == pytest.approx(difference - 1.96 * error, abs=0.01)
    assert result["high"] == pytest.approx(difference + 1.96 * error, abs=0.01)
    assert result["low"] > 0 and result["p_value"] < 0.01  # DeLong's two-sided p-value here is 0.0002


def test_paired_bootstrap_of_identical_scores_is_zero():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    scores = labels + rng.normal(size=200)
    result = paired_bootstrap_roc_auc(labels, scores, scores.copy(), draws=200)
    assert (result["difference"], result["low"], result["high"], result["p_value"]) == (0.0, 0.0, 0.0, 1.0)
