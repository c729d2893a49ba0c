"""The model card's text from real figures (evaluation.with_intervals on generated scores)."""

import numpy as np

from skin_cancer_assets.model_card import model_card, operating_points_table
from skin_cancer_contract.evaluation import with_intervals


def test_the_card_states_use_limits_data_both_operating_points_and_near_duplicates():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 200)
    probs = np.clip(labels * 0.4 + rng.random(200) * 0.6, 0, 1)
    points = {"served": (0.3, with_intervals(labels, probs, 0.3)), "accuracy": (0.5, with_intervals(labels, probs, 0.5))}
    distinct = {"distinct_test_images": 190, "distinct_test_accuracy": 0.81, "distinct_test_roc_auc": 0.9}
    data = {"fitted": 800, "validation": 200, "test": 200, "split_digest": "abc123"}
    card = model_card("basic_cnn", "A small CNN.", data, points, 10, distinct)
    assert "**not a diagnosis**" in card and "## Limits" in card
    assert "800 training images fitted on, 200 held out for validation (validation split abc123" in card
    served = points["served"][1]
    assert f"ROC-AUC {served['roc_auc']:.3f} ({served['roc_auc_low']:.3f}-{served['roc_auc_high']:.3f})" in card
    assert "10 test images have a near-duplicate" in card and "(190 images)" in card
    table = operating_points_table(points)
    assert table in card and len(table.splitlines()) == 4
    accuracy = points["accuracy"][1]
    assert f"| accuracy | 0.500 | {accuracy['accuracy']:.3f} ({accuracy['accuracy_low']:.3f}-{accuracy['accuracy_high']:.3f})" in table
