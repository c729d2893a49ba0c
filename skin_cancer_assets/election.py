"""The champion election as data and one pure function: who holds the alias, and why.

No Dagster, MLflow or TensorFlow here. Each model step hands the election a `Candidate`
record; `champion_model` reads the incumbent from the registry with its scores on today's
validation images and calls `elect`. Candidates are ranked by ROC-AUC on the shared validation
split (threshold-free); the test split is only reported, never used to choose. The best one
replaces the incumbent only on evidence: a paired comparison on the same images whose one-sided
lower bound beats the incumbent by more than `min_improvement`.
"""

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

import numpy as np

from skin_cancer_contract.evaluation import paired_roc_auc_difference

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
    validation_probabilities: dict[str, float] = field(default_factory=dict, repr=False)
    """Probability of malignant for each validation image, by the image's sha256: what the paired
    comparison with the incumbent reads."""

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
    """The lower bound of the challenger's ROC-AUC gain over the champion must exceed this (>= 0)."""
    confidence: float = 0.95
    """Confidence of that one-sided lower bound."""
    min_comparison_images: int = 100
    """Images of each class both were scored on that a comparison needs; with fewer the champion stays."""

    def __post_init__(self):
        if not self.min_improvement >= 0:
            raise ValueError(f"min_improvement {self.min_improvement} is below 0: a worse model would be promoted")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence {self.confidence} is not between 0 and 1")


COMPARISON_METHOD = "DeLong paired ROC-AUC difference"


@dataclass(frozen=True)
class Comparison:
    """The challenger against the champion on the same images."""

    malignant_images: int
    benign_images: int
    difference: float | None = None
    """Challenger's ROC-AUC minus the champion's; None when there were too few images to compare."""
    lower_bound: float | None = None
    """One-sided lower bound of `difference` at `confidence`."""
    confidence: float = 0.95
    method: str = COMPARISON_METHOD

    def to_record(self) -> dict:
        return asdict(self)


def compare(challenger: Candidate, incumbent: Candidate, labels: dict[str, int], rules: Rules) -> Comparison:
    """`challenger` against `incumbent` on the images of `labels` that both were scored on."""
    shared = [image for image in labels if image in challenger.validation_probabilities and image in incumbent.validation_probabilities]
    truth = np.array([labels[image] for image in shared], dtype=np.int64)
    malignant, benign = int(truth.sum()), int(len(truth) - truth.sum())
    if min(malignant, benign) < rules.min_comparison_images:
        return Comparison(malignant, benign, confidence=rules.confidence)
    difference, error = paired_roc_auc_difference(
        truth,
        np.array([challenger.validation_probabilities[image] for image in shared]),
        np.array([incumbent.validation_probabilities[image] for image in shared]),
    )
    lower_bound = difference - NormalDist().inv_cdf(rules.confidence) * error
    return Comparison(malignant, benign, difference, lower_bound, rules.confidence)


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
    comparison: Comparison | None = None
    """The challenger against the incumbent, when there was one to compare with."""

    @property
    def moves_alias(self) -> bool:
        return self.outcome == PROMOTED


class IncomparableScores(ValueError):
    """The scores were not measured on the same validation images, or one is missing."""


def elect(candidates: list[Candidate], incumbent: Candidate | None, rules: Rules, labels: dict[str, int] | None = None) -> Decision:
    """Rank `candidates` by validation ROC-AUC (ties go to the first) and decide on the alias.

    `labels` (sha256 -> 0/1) are the validation images the challenger may be compared with the
    incumbent on: those the incumbent never trained on.
    """
    if not candidates:
        raise ValueError("no candidates to elect from")
    require_comparable(candidates)
    challenger = max(candidates, key=lambda c: c.roc_auc)
    best = f"{challenger.label} (validation ROC-AUC {challenger.roc_auc:.4f})"
    bar = f"the bar {rules.min_roc_auc:.4f}"

    if incumbent is None:
        if challenger.roc_auc < rules.min_roc_auc:
            return Decision(REJECTED, None, challenger, f"no champion yet; the best candidate {best} is below {bar}", False)
        return Decision(PROMOTED, challenger, challenger, f"no champion yet; {best} is the best candidate", True)

    require_comparable([incumbent])
    held = f"champion {incumbent.label} ({incumbent.roc_auc:.4f})"
    incumbent_meets_bar = incumbent.roc_auc >= rules.min_roc_auc
    below = "" if incumbent_meets_bar else f"; the champion is below {bar}"
    if challenger.version == incumbent.version:
        return Decision(KEPT, incumbent, challenger, f"{best} is already the champion{below}", incumbent_meets_bar)
    comparison = compare(challenger, incumbent, labels or {}, rules)
    if comparison.difference is None:
        reason = (
            f"too few images to compare {best} with {held}: both were scored on {comparison.malignant_images} "
            f"malignant and {comparison.benign_images} benign validation images it never trained on, a promotion "
            f"needs {rules.min_comparison_images} of each; the champion stays{below}"
        )
        return Decision(KEPT, incumbent, challenger, reason, incumbent_meets_bar, comparison)
    evidence = (
        f"ROC-AUC {comparison.difference:+.4f} on the same {comparison.malignant_images} malignant and "
        f"{comparison.benign_images} benign images, one-sided {comparison.confidence:.0%} lower bound "
        f"{comparison.lower_bound:+.4f}"
    )
    if comparison.lower_bound <= rules.min_improvement:
        reason = f"the best candidate {best} does not beat {held} by more than {rules.min_improvement:.4f} ({evidence}){below}"
        return Decision(KEPT, incumbent, challenger, reason, incumbent_meets_bar, comparison)
    if challenger.roc_auc < rules.min_roc_auc:
        reason = f"{best} beats {held} ({evidence}) but is below {bar}: the alias stays"
        return Decision(REJECTED, incumbent, challenger, reason, False, comparison)
    return Decision(PROMOTED, challenger, challenger, f"{best} beats {held} ({evidence})", True, comparison)


def require_comparable(scored: list[Candidate]) -> None:
    """Raise unless every score was measured on the same validation images and is a number."""
    unscored = [c.label for c in scored if c.validation_metrics.get("roc_auc") is None or math.isnan(c.roc_auc)]
    if unscored:
        raise IncomparableScores(f"no validation ROC-AUC for {', '.join(unscored)}")
    digests = {c.validation_digest for c in scored}
    if len(digests) > 1:
        listed = "; ".join(f"{c.label} on {c.validation_digest or 'an unknown split'}" for c in scored)
        raise IncomparableScores(f"scores measured on different validation splits, refusing to compare them: {listed}")
