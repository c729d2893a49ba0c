"""The shared evaluation on real numbers: the threshold for a recall, the metrics, the split digest."""

import numpy as np
import pytest

from skin_cancer_contract.evaluation import evaluate, split_digest, threshold_for_recall


def test_threshold_reaches_the_target_recall_on_validation_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    probs = np.clip(labels * 0.3 + rng.random(400) * 0.7, 0, 1).astype(np.float32)
    threshold = threshold_for_recall(labels, probs, 0.9)
    metrics = evaluate(labels, probs, threshold)
    assert metrics["recall_malignant"] >= 0.9
    # the highest such threshold: a hair higher loses the target
    assert evaluate(labels, probs, threshold + 1e-6)["recall_malignant"] < 0.9


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
