"""Every branch of the election rules, on plain records (no Dagster, MLflow or TensorFlow)."""

import dataclasses

import numpy as np
import pytest

from skin_cancer_assets.election import KEPT, PROMOTED, REJECTED, Candidate, IncomparableScores, Rules, elect
from skin_cancer_contract.evaluation import evaluate

SPLIT = "validation-a"
LABELS = {f"image-{n}": n % 2 for n in range(400)}
"""200 validation images of each class, by image id."""


def scores(skill: float, seed: int = 1) -> dict[str, float]:
    """Probabilities of malignant for LABELS: the label times `skill` plus noise; higher skill ranks better."""
    noise = np.random.default_rng(seed).random(len(LABELS))
    return {image: skill * label + (1 - skill) * n for (image, label), n in zip(LABELS.items(), noise)}


def candidate(version: str, skill: float = 0.5, digest: str = SPLIT, roc_auc: float | None = None, test_roc_auc: float = 0.5,
              seed: int = 1) -> Candidate:
    """A candidate scored on LABELS with probabilities of `skill`; its ROC-AUC measured from them
    unless `roc_auc` is given (only for tests without an incumbent)."""
    probabilities = scores(skill, seed)
    measured = evaluate(np.array(list(LABELS.values())), np.array(list(probabilities.values())), 0.5)["roc_auc"]
    return Candidate(
        model_class="basic_cnn",
        version=version,
        run_id=f"run-{version}",
        threshold=0.5,
        validation_digest=digest,
        validation_metrics={"roc_auc": measured if roc_auc is None else roc_auc, "accuracy": 0.8},
        test_digest="test-a",
        test_metrics={"roc_auc": test_roc_auc, "accuracy": 0.8},
        validation_probabilities=probabilities,
    )


def test_no_champion_yet_promotes_the_best_candidate():
    decision = elect([candidate("1", 0.2), candidate("2", 0.4), candidate("3", 0.3)], None, Rules(min_roc_auc=0.5))
    assert decision.outcome == PROMOTED and decision.moves_alias and decision.meets_bar
    assert decision.champion.version == "2" and decision.challenger.version == "2"
    assert "no champion yet" in decision.reason and decision.comparison is None


def test_candidates_are_ranked_on_validation_never_on_test():
    better_on_test = candidate("1", roc_auc=0.80, test_roc_auc=0.99)
    better_on_validation = candidate("2", roc_auc=0.90, test_roc_auc=0.60)
    assert elect([better_on_test, better_on_validation], None, Rules(0.0)).champion.version == "2"


def test_a_tie_between_candidates_goes_to_the_first():
    assert elect([candidate("1", 0.3), candidate("2", 0.3)], None, Rules(0.0)).champion.version == "1"


def test_a_clearly_better_challenger_is_promoted_over_the_incumbent_with_its_evidence():
    decision = elect([candidate("2", 0.4)], candidate("1", 0.1), Rules(0.5), LABELS)
    assert decision.outcome == PROMOTED and decision.champion.version == "2"
    comparison = decision.comparison
    assert (comparison.malignant_images, comparison.benign_images) == (200, 200)
    assert comparison.difference > comparison.lower_bound > 0 and comparison.method.startswith("DeLong")
    assert comparison.difference == pytest.approx(decision.challenger.roc_auc - candidate("1", 0.1).roc_auc)
    assert "beats champion basic_cnn v1" in decision.reason and "lower bound" in decision.reason


def test_a_slightly_better_challenger_without_evidence_keeps_the_incumbent():
    """Higher on these images, but within what other images could reverse: no promotion."""
    incumbent, challenger = candidate("1", 0.30, seed=1), candidate("2", 0.30, seed=2)
    if challenger.roc_auc < incumbent.roc_auc:
        incumbent, challenger = dataclasses.replace(challenger, version="1"), dataclasses.replace(incumbent, version="2")
    decision = elect([challenger], incumbent, Rules(0.0), LABELS)
    assert challenger.roc_auc > incumbent.roc_auc
    assert decision.outcome == KEPT and decision.comparison.lower_bound < 0 < decision.comparison.difference
    assert "does not beat" in decision.reason


def test_a_worse_challenger_keeps_the_incumbent():
    decision = elect([candidate("2", 0.1)], candidate("1", 0.4), Rules(0.5), LABELS)
    assert decision.outcome == KEPT and not decision.moves_alias and decision.meets_bar
    assert decision.champion.version == "1" and decision.challenger.version == "2"
    assert "does not beat champion basic_cnn v1" in decision.reason


def test_identical_scores_keep_the_incumbent():
    decision = elect([candidate("2", 0.3)], candidate("1", 0.3), Rules(0.0), LABELS)
    assert decision.outcome == KEPT and decision.champion.version == "1"
    assert decision.comparison.difference == 0


def test_min_improvement_is_a_margin_the_lower_bound_must_exceed():
    incumbent, challenger = candidate("1", 0.1), candidate("2", 0.4)
    lower_bound = elect([challenger], incumbent, Rules(0.0), LABELS).comparison.lower_bound
    assert elect([challenger], incumbent, Rules(0.0, min_improvement=lower_bound), LABELS).outcome == KEPT
    assert elect([challenger], incumbent, Rules(0.0, min_improvement=lower_bound - 1e-9), LABELS).outcome == PROMOTED
    assert "by more than" in elect([challenger], incumbent, Rules(0.0, min_improvement=lower_bound), LABELS).reason


def test_a_higher_confidence_asks_for_more_evidence():
    incumbent, challenger = candidate("1", 0.1), candidate("2", 0.4)
    at_95 = elect([challenger], incumbent, Rules(0.0, confidence=0.95), LABELS).comparison
    at_999 = elect([challenger], incumbent, Rules(0.0, confidence=0.999), LABELS).comparison
    assert at_999.difference == at_95.difference and at_999.lower_bound < at_95.lower_bound


def test_a_negative_min_improvement_is_refused():
    with pytest.raises(ValueError, match="min_improvement -0.1 is below 0"):
        Rules(0.0, min_improvement=-0.1)


def test_four_images_per_class_keep_the_incumbent_however_good_the_challenger():
    few = {image: label for image, label in list(LABELS.items())[:8]}  # 4 of each class
    decision = elect([candidate("2", 1.0)], candidate("1", 0.0), Rules(0.0, min_comparison_images=100), few)
    assert decision.outcome == KEPT and decision.champion.version == "1"
    assert decision.comparison.difference is None
    assert "4 malignant and 4 benign" in decision.reason and "needs 100 of each" in decision.reason


def test_only_images_both_were_scored_on_are_compared():
    incumbent = candidate("1", 0.1)
    half = dict(list(incumbent.validation_probabilities.items())[:200])
    decision = elect([candidate("2", 0.4)], dataclasses.replace(incumbent, validation_probabilities=half), Rules(0.0), LABELS)
    assert decision.comparison.malignant_images + decision.comparison.benign_images == 200


def test_the_champion_offered_again_is_kept():
    decision = elect([candidate("1", 0.4), candidate("2", 0.2)], candidate("1", 0.4), Rules(0.5), LABELS)
    assert decision.outcome == KEPT and decision.champion.version == "1"
    assert "already the champion" in decision.reason


def test_below_the_bar_with_no_champion_nothing_is_promoted():
    decision = elect([candidate("1", roc_auc=0.60)], None, Rules(min_roc_auc=0.80))
    assert decision.outcome == REJECTED and decision.champion is None and not decision.meets_bar
    assert "below the bar 0.8000" in decision.reason


def test_the_bar_with_an_incumbent_admits_a_challenger_exactly_at_it_and_rejects_one_just_below():
    incumbent, challenger = candidate("1", 0.1), candidate("2", 0.4)
    at_the_bar = elect([challenger], incumbent, Rules(min_roc_auc=challenger.roc_auc), LABELS)
    assert at_the_bar.outcome == PROMOTED and at_the_bar.meets_bar
    just_above = elect([challenger], incumbent, Rules(min_roc_auc=challenger.roc_auc + 1e-9), LABELS)
    assert just_above.outcome == REJECTED and not just_above.moves_alias and not just_above.meets_bar
    assert just_above.champion.version == "1" and "below the bar" in just_above.reason


def test_a_kept_champion_below_the_bar_is_reported_as_not_meeting_it():
    decision = elect([candidate("2", 0.0)], candidate("1", 0.2), Rules(min_roc_auc=0.99), LABELS)
    assert decision.outcome == KEPT and not decision.meets_bar
    assert decision.reason.endswith("the champion is below the bar 0.9900")


def test_the_bar_is_inclusive():
    assert elect([candidate("1", roc_auc=0.80)], None, Rules(min_roc_auc=0.80)).outcome == PROMOTED


def test_candidates_scored_on_different_validation_splits_are_refused():
    with pytest.raises(IncomparableScores, match="different validation splits") as refused:
        elect([candidate("1", 0.3), candidate("2", 0.2, digest="validation-b")], None, Rules(0.0))
    assert "basic_cnn v2 on validation-b" in str(refused.value)


def test_a_missing_or_undefined_score_is_refused():
    with pytest.raises(IncomparableScores, match="no validation ROC-AUC for basic_cnn v2"):
        elect([candidate("1", 0.3), candidate("2", roc_auc=float("nan"))], None, Rules(0.0))


def test_no_candidates_is_an_error():
    with pytest.raises(ValueError, match="no candidates"):
        elect([], candidate("1", 0.3), Rules(0.0))


def test_records_round_trip_as_plain_json_values():
    import json

    record = candidate("7", 0.3).to_record()
    assert Candidate.from_record(json.loads(json.dumps(record))) == candidate("7", 0.3)
