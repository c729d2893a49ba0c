"""How every model is measured and where its decision threshold is set; one definition for all."""

import hashlib
import math
from statistics import NormalDist

import numpy as np

METRIC_LABELS = {
    "accuracy": "Accuracy",
    "roc_auc": "ROC AUC",
    "recall_malignant": "Recall (malignant)",
    "specificity": "Specificity",
    "precision": "Precision",
}
"""The figures reported for every model and split (logged to MLflow as `{split}_{name}`), as people read them."""
METRICS = tuple(METRIC_LABELS)


def evaluate(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, ROC-AUC, malignant recall, specificity, precision and the confusion counts."""
    from sklearn.metrics import roc_auc_score  # only the pipeline evaluates; serving never pays for it

    predicted = probs >= threshold
    actual = labels == 1
    tp, fn = int(np.sum(predicted & actual)), int(np.sum(~predicted & actual))
    tn, fp = int(np.sum(~predicted & ~actual)), int(np.sum(predicted & ~actual))
    both_classes = 0 < actual.sum() < len(actual)
    return {
        "accuracy": (tp + tn) / max(1, len(labels)),
        "roc_auc": float(roc_auc_score(actual, probs)) if both_classes else float("nan"),
        "recall_malignant": tp / max(1, tp + fn),
        "specificity": tn / max(1, tn + fp),
        "precision": tp / max(1, tp + fp),
        "true_negatives": tn,
        "false_positives": fp,
        "false_negatives": fn,
        "true_positives": tp,
    }


def wilson_interval(successes: int, total: int, z: float = 1.959964) -> tuple[float, float] | None:
    """The Wilson score interval of `successes` out of `total` (95 % by default); None when there
    is nothing to estimate. It stays inside [0, 1] and is honest for small counts."""
    if total == 0:
        return None
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def threshold_for_recall(labels: np.ndarray, probs: np.ndarray, target_recall: float, confidence: float = 0.0) -> float:
    """The highest threshold whose malignant recall on (labels, probs) reaches `target_recall`.

    Recall measured on a few hundred validation images overstates the recall on unseen ones about
    as often as it understates it. With `confidence` > 0 the threshold keeps a margin: the lower
    bound of the recall's one-sided Wilson interval at that confidence must reach the target. When
    no threshold can (too few malignant images), it is the one that catches every malignant image.
    """
    positives = np.sort(probs[labels == 1])[::-1]
    if len(positives) == 0:
        return 0.5
    z = NormalDist().inv_cdf(confidence) if confidence > 0 else 0.0
    for caught in range(1, len(positives) + 1):
        if wilson_interval(caught, len(positives), z)[0] >= target_recall:
            return float(positives[caught - 1])
    return float(positives[-1])


def split_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """Identifies a split by every pixel and label, so scores are only compared when measured on
    the same images (hashing a validation split of 527 images at 224 px takes a fraction of a second)."""
    digest = hashlib.sha256(labels.tobytes())
    digest.update(str(images.shape).encode())
    digest.update(np.ascontiguousarray(images))  # the array's own buffer: no copy
    return digest.hexdigest()[:16]


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, ties sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    return ranks


def _roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC-AUC from the scores of the malignant and the benign images (Mann-Whitney U)."""
    m, n = len(positive), len(negative)
    return float((_midranks(np.concatenate([positive, negative]))[:m].sum() - m * (m + 1) / 2) / (m * n))


def paired_roc_auc_difference(labels: np.ndarray, first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """ROC-AUC of `first` minus that of `second`, both scored on the same images, and the
    standard error of that difference by DeLong's method (DeLong, DeLong and Clarke-Pearson 1988,
    in Sun and Xu's fast form). Pairing removes what the two models share: the images."""
    positive, negative = labels == 1, labels == 0
    m, n = int(positive.sum()), int(negative.sum())
    if m < 2 or n < 2:
        raise ValueError(f"a paired ROC-AUC comparison needs two images of each class, got {m} malignant and {n} benign")
    positive_parts, negative_parts = [], []
    for scores in (first, second):
        pos, neg = scores[positive].astype(np.float64), scores[negative].astype(np.float64)
        combined = _midranks(np.concatenate([pos, neg]))
        positive_parts.append((combined[:m] - _midranks(pos)) / n)  # share of benign ranked below each malignant
        negative_parts.append(1.0 - (combined[m:] - _midranks(neg)) / m)  # share of malignant ranked above each benign
    covariance = np.cov(positive_parts) / m + np.cov(negative_parts) / n
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    difference = positive_parts[0].mean() - positive_parts[1].mean()  # each mean is that model's ROC-AUC
    return float(difference), float(math.sqrt(max(variance, 0.0)))


def threshold_for_accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    """The lowest threshold that makes the most correct calls on (labels, probs): the second
    operating point, reported beside the recall threshold that is served."""
    candidates = np.unique(probs)
    correct = [int(np.sum((probs >= t) == (labels == 1))) for t in candidates]
    return float(candidates[int(np.argmax(correct))]) if len(candidates) else 0.5


def with_intervals(labels: np.ndarray, probs: np.ndarray, threshold: float, resamples: int = 1000) -> dict[str, float]:
    """`evaluate` and a 95 % interval for each figure people act on: Wilson for accuracy, malignant
    recall and specificity (proportions of known counts), a stratified bootstrap for ROC-AUC."""
    figures = evaluate(labels, probs, threshold)
    tp, fn, tn, fp = (figures[k] for k in ("true_positives", "false_negatives", "true_negatives", "false_positives"))
    counts = {"accuracy": (tp + tn, len(labels)), "recall_malignant": (tp, tp + fn), "specificity": (tn, tn + fp)}
    for name, (successes, total) in counts.items():
        low, high = wilson_interval(successes, total) or (math.nan, math.nan)
        # at 0 or 1 Wilson's bound is the point itself but for rounding: keep the point inside
        figures[f"{name}_low"], figures[f"{name}_high"] = min(low, figures[name]), max(high, figures[name])
    rng = np.random.default_rng(0)
    positive, negative = probs[labels == 1].astype(np.float64), probs[labels == 0].astype(np.float64)
    if len(positive) and len(negative):
        resampled = [  # each class resampled apart, so every draw has both
            _roc_auc(rng.choice(positive, len(positive)), rng.choice(negative, len(negative))) for _ in range(resamples)
        ]
        figures["roc_auc_low"], figures["roc_auc_high"] = (float(q) for q in np.quantile(resampled, [0.025, 0.975]))
    else:
        figures["roc_auc_low"] = figures["roc_auc_high"] = math.nan
    return figures


def mcnemar(labels: np.ndarray, predictions_a: np.ndarray, predictions_b: np.ndarray) -> dict[str, float]:
    """McNemar's test of two models' correct calls on the same images (`predictions_*` are 0/1 or bool).

    Only the discordant images count: `a_only` that the first model gets right and the second wrong,
    `b_only` the reverse. With fewer than 25 discordant images the p-value is the exact two-sided
    binomial one (min(1, 2 P(X <= min(a_only, b_only))), X ~ Bin(a_only + b_only, 1/2)); with more,
    the continuity-corrected chi-square ((|a_only - b_only| - 1)^2 / (a_only + b_only), 1 degree of freedom).
    """
    actual = np.asarray(labels) == 1
    right_a = (np.asarray(predictions_a).astype(bool)) == actual
    right_b = (np.asarray(predictions_b).astype(bool)) == actual
    a_only, b_only = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    discordant = a_only + b_only
    if discordant == 0:
        p_value, method = 1.0, "exact"
    elif discordant < 25:
        tail = sum(math.comb(discordant, k) for k in range(min(a_only, b_only) + 1)) / 2**discordant
        p_value, method = min(1.0, 2 * tail), "exact"
    else:
        statistic = (abs(a_only - b_only) - 1) ** 2 / discordant
        p_value, method = math.erfc(math.sqrt(statistic / 2)), "chi-square"
    return {"a_only": a_only, "b_only": b_only, "p_value": float(p_value), "method": method}


def paired_bootstrap_roc_auc(
    labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, draws: int = 1000, seed: int = 0
) -> dict[str, float]:
    """ROC-AUC of `scores_a` minus that of `scores_b` on the same images, with a 95 % percentile
    interval and a two-sided p-value from a paired, stratified bootstrap: every draw resamples the
    malignant and the benign images apart (so each has both classes) and scores the same images
    for both models. The p-value is twice the smaller share of draws on either side of 0, at most 1."""
    positive, negative = np.flatnonzero(np.asarray(labels) == 1), np.flatnonzero(np.asarray(labels) == 0)
    if len(positive) < 2 or len(negative) < 2:
        raise ValueError(f"a paired bootstrap needs two images of each class, got {len(positive)} malignant and {len(negative)} benign")
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    difference = _roc_auc(a[positive], a[negative]) - _roc_auc(b[positive], b[negative])
    rng = np.random.default_rng(seed)
    resampled = np.empty(draws)
    for draw in range(draws):
        pos, neg = rng.choice(positive, len(positive)), rng.choice(negative, len(negative))
        resampled[draw] = _roc_auc(a[pos], a[neg]) - _roc_auc(b[pos], b[neg])
    low, high = (float(q) for q in np.quantile(resampled, [0.025, 0.975]))
    p_value = min(1.0, 2 * min(np.mean(resampled <= 0), np.mean(resampled >= 0)))
    return {"difference": float(difference), "low": low, "high": high, "p_value": float(p_value)}
