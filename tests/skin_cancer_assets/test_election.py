"""Every branch of the election rules, on plain records (no Dagster, MLflow or TensorFlow)."""

import pytest

from skin_cancer_assets.election import KEPT, PROMOTED, REJECTED, Candidate, IncomparableScores, Rules, elect

SPLIT = "validation-a"


def candidate(version: str, roc_auc: float, digest: str = SPLIT, model_class: str = "basic_cnn", test_roc_auc: float = 0.5):
    return Candidate(
        model_class=model_class,
        version=version,
        run_id=f"run-{version}",
        threshold=0.5,
        validation_digest=digest,
        validation_metrics={"roc_auc": roc_auc, "accuracy": 0.8},
        test_digest="test-a",
        test_metrics={"roc_auc": test_roc_auc, "accuracy": 0.8},
    )


def test_no_champion_yet_promotes_the_best_candidate():
    decision = elect([candidate("1", 0.80), candidate("2", 0.90), candidate("3", 0.85)], None, Rules(min_roc_auc=0.5))
    assert decision.outcome == PROMOTED and decision.moves_alias and decision.meets_bar
    assert decision.champion.version == "2" and decision.challenger.version == "2"
    assert "no champion yet" in decision.reason


def test_candidates_are_ranked_on_validation_never_on_test():
    better_on_test = candidate("1", 0.80, test_roc_auc=0.99)
    better_on_validation = candidate("2", 0.90, test_roc_auc=0.60)
    assert elect([better_on_test, better_on_validation], None, Rules(0.0)).champion.version == "2"


def test_a_tie_between_candidates_goes_to_the_first():
    assert elect([candidate("1", 0.9), candidate("2", 0.9)], None, Rules(0.0)).champion.version == "1"


def test_a_better_challenger_is_promoted_over_the_incumbent():
    decision = elect([candidate("2", 0.91)], candidate("1", 0.90), Rules(0.5))
    assert decision.outcome == PROMOTED and decision.champion.version == "2"
    assert "beats champion basic_cnn v1 (0.9000)" in decision.reason


def test_a_worse_challenger_keeps_the_incumbent():
    decision = elect([candidate("2", 0.70)], candidate("1", 0.90), Rules(0.5))
    assert decision.outcome == KEPT and not decision.moves_alias and decision.meets_bar
    assert decision.champion.version == "1" and decision.challenger.version == "2"
    assert "does not beat champion basic_cnn v1" in decision.reason


def test_an_exact_tie_keeps_the_incumbent():
    decision = elect([candidate("2", 0.90)], candidate("1", 0.90), Rules(0.0))
    assert decision.outcome == KEPT and decision.champion.version == "1"


def test_min_improvement_is_a_margin_the_challenger_must_exceed():
    incumbent = candidate("1", 0.90)
    assert elect([candidate("2", 0.92)], incumbent, Rules(0.0, min_improvement=0.02)).outcome == KEPT
    decision = elect([candidate("2", 0.9201)], incumbent, Rules(0.0, min_improvement=0.02))
    assert decision.outcome == PROMOTED
    assert "by more than" in elect([candidate("2", 0.91)], incumbent, Rules(0.0, min_improvement=0.02)).reason


def test_the_champion_offered_again_is_kept():
    decision = elect([candidate("1", 0.90), candidate("2", 0.80)], candidate("1", 0.90), Rules(0.5))
    assert decision.outcome == KEPT and decision.champion.version == "1"
    assert "already the champion" in decision.reason


def test_below_the_bar_with_no_champion_nothing_is_promoted():
    decision = elect([candidate("1", 0.60)], None, Rules(min_roc_auc=0.80))
    assert decision.outcome == REJECTED and decision.champion is None and not decision.meets_bar
    assert "below the bar 0.8000" in decision.reason


def test_below_the_bar_a_better_challenger_leaves_the_alias_with_the_incumbent():
    decision = elect([candidate("2", 0.75)], candidate("1", 0.70), Rules(min_roc_auc=0.80))
    assert decision.outcome == REJECTED and not decision.moves_alias and not decision.meets_bar
    assert decision.champion.version == "1" and decision.challenger.version == "2"
    assert "below the bar" in decision.reason


def test_a_kept_champion_below_the_bar_is_reported_as_not_meeting_it():
    decision = elect([candidate("2", 0.60)], candidate("1", 0.70), Rules(min_roc_auc=0.80))
    assert decision.outcome == KEPT and not decision.meets_bar
    assert decision.reason.endswith("the champion is below the bar 0.8000")


def test_the_bar_is_inclusive():
    assert elect([candidate("1", 0.80)], None, Rules(min_roc_auc=0.80)).outcome == PROMOTED


def test_scores_on_different_validation_splits_are_refused():
    with pytest.raises(IncomparableScores, match="different validation splits") as refused:
        elect([candidate("2", 0.95)], candidate("1", 0.70, digest="validation-b"), Rules(0.0))
    assert "basic_cnn v1 on validation-b" in str(refused.value)
    with pytest.raises(IncomparableScores):
        elect([candidate("1", 0.9), candidate("2", 0.8, digest="validation-b")], None, Rules(0.0))


def test_a_missing_or_undefined_score_is_refused():
    with pytest.raises(IncomparableScores, match="no validation ROC-AUC for basic_cnn v2"):
        elect([candidate("1", 0.9), candidate("2", float("nan"))], None, Rules(0.0))


def test_no_candidates_is_an_error():
    with pytest.raises(ValueError, match="no candidates"):
        elect([], candidate("1", 0.9), Rules(0.0))


def test_records_round_trip_as_plain_json_values():
    import json

    record = candidate("7", 0.88).to_record()
    assert Candidate.from_record(json.loads(json.dumps(record))) == candidate("7", 0.88)
