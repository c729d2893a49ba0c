"""The champion election as data and one pure function: who holds the alias, and why.

No Dagster, MLflow or TensorFlow here. Each model step hands the election a `Candidate`
record; `champion_model` reads the incumbent from the registry, makes every score
comparable (re-scoring on the same validation images when needed) and calls `elect`.
Candidates are ranked by ROC-AUC on the shared validation split (threshold-free); the test
split is only reported, never used to choose.
"""

import math
from dataclasses import asdict, dataclass

PROMOTED = "promoted"
"""The best candidate beats the champion (or there was none) and meets the bar: the alias moves to it."""
KEPT = "kept"
"""No candidate beats the champion: the alias stays."""
REJECTED = "rejected"
"""The best candidate would have taken the alias but is below the quality bar: the alias stays."""


@dataclass(frozen=True)
class Candidate:
    """What one registered model offers the election: stored as JSON beside each trained network."""

    model_class: str
    version: str
    """Version of the registered model `skin-cancer-classifier`."""
    run_id: str
    threshold: float
    """Decision threshold, chosen on the validation split for the target malignant recall."""
    validation_digest: str
    """`split_digest` of the validation images the validation metrics were measured on."""
    validation_metrics: dict[str, float]
    test_digest: str
    test_metrics: dict[str, float]
    """Reported, never used to elect."""

    @property
    def roc_auc(self) -> float:
        return self.validation_metrics["roc_auc"]

    @property
    def label(self) -> str:
        return f"{self.model_class} v{self.version}"

    def to_record(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict) -> "Candidate":
        return cls(**record)


@dataclass(frozen=True)
class Rules:
    min_roc_auc: float
    """Validation ROC-AUC the champion must reach; below it the alias does not move."""
    min_improvement: float = 0.0
    """A challenger must beat the champion by more than this; an exact tie keeps the champion."""


@dataclass(frozen=True)
class Decision:
    outcome: str
    """PROMOTED, KEPT or REJECTED."""
    champion: Candidate | None
    """Who holds the alias after the election (None: still nobody)."""
    challenger: Candidate
    """The best candidate on validation ROC-AUC."""
    reason: str
    meets_bar: bool
    """Whether the champion after the election reaches `Rules.min_roc_auc`."""

    @property
    def moves_alias(self) -> bool:
        return self.outcome == PROMOTED


class IncomparableScores(ValueError):
    """The scores were not measured on the same validation images, or one is missing."""


def elect(candidates: list[Candidate], incumbent: Candidate | None, rules: Rules) -> Decision:
    """Rank `candidates` by validation ROC-AUC (ties go to the first) and decide on the alias."""
    if not candidates:
        raise ValueError("no candidates to elect from")
    require_comparable([*candidates, *([incumbent] if incumbent else [])])
    challenger = max(candidates, key=lambda c: c.roc_auc)
    best = f"{challenger.label} (validation ROC-AUC {challenger.roc_auc:.4f})"
    bar = f"the bar {rules.min_roc_auc:.4f}"

    if incumbent is None:
        if challenger.roc_auc < rules.min_roc_auc:
            return Decision(REJECTED, None, challenger, f"no champion yet; the best candidate {best} is below {bar}", False)
        return Decision(PROMOTED, challenger, challenger, f"no champion yet; {best} is the best candidate", True)

    held = f"champion {incumbent.label} ({incumbent.roc_auc:.4f})"
    incumbent_meets_bar = incumbent.roc_auc >= rules.min_roc_auc
    below = "" if incumbent_meets_bar else f"; the champion is below {bar}"
    if challenger.version == incumbent.version:
        return Decision(KEPT, incumbent, challenger, f"{best} is already the champion{below}", incumbent_meets_bar)
    if challenger.roc_auc <= incumbent.roc_auc + rules.min_improvement:
        margin = f" by more than {rules.min_improvement:.4f}" if rules.min_improvement else ""
        reason = f"the best candidate {best} does not beat {held}{margin}{below}"
        return Decision(KEPT, incumbent, challenger, reason, incumbent_meets_bar)
    if challenger.roc_auc < rules.min_roc_auc:
        reason = f"{best} beats {held} but is below {bar}: the alias stays"
        return Decision(REJECTED, incumbent, challenger, reason, False)
    return Decision(PROMOTED, challenger, challenger, f"{best} beats {held}", True)


def require_comparable(scored: list[Candidate]) -> None:
    """Raise unless every score was measured on the same validation images and is a number."""
    unscored = [c.label for c in scored if c.validation_metrics.get("roc_auc") is None or math.isnan(c.roc_auc)]
    if unscored:
        raise IncomparableScores(f"no validation ROC-AUC for {', '.join(unscored)}")
    digests = {c.validation_digest for c in scored}
    if len(digests) > 1:
        listed = "; ".join(f"{c.label} on {c.validation_digest or 'an unknown split'}" for c in scored)
        raise IncomparableScores(f"scores measured on different validation splits, refusing to compare them: {listed}")
