"""A registered version's model card: what it is for, what it was measured on, how sure the figures are.

Plain functions (no Dagster or MLflow): the model step writes the card into the version's MLflow
description and shows the operating points in the asset's metadata.
"""

INTENDED_USE = (
    "Ranks dermoscopy images of a single skin lesion (ISIC-style, RGB, the lesion centred) by their "
    "probability of being malignant, to help a clinician decide which lesions to look at first or to "
    "biopsy. It is **not a diagnosis**: a benign call does not rule out melanoma or another cancer."
)
LIMITS = (
    "Trained and measured on ISIC dermoscopy images labelled benign or malignant only (no other lesion "
    "types). Not validated on clinical (non-dermoscopic) photographs, on other skin types than the data "
    "set's, on images of other devices, or on lesions of classes the data set lacks. The figures are from "
    "one held-out test set; the intervals say how far they may move on new images of the same kind."
)
def _with_interval(figures: dict, name: str) -> str:
    return f"{figures[name]:.3f} ({figures[f'{name}_low']:.3f}-{figures[f'{name}_high']:.3f})"


def operating_points_table(points: dict[str, tuple[float, dict]]) -> str:
    """Markdown: each operating point's threshold and test figures with 95 % intervals."""
    rows = [
        "| operating point | threshold | accuracy | malignant recall | specificity |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (threshold, figures) in points.items():
        cells = " | ".join(_with_interval(figures, metric) for metric in ("accuracy", "recall_malignant", "specificity"))
        rows.append(f"| {name} | {threshold:.3f} | {cells} |")
    return "\n".join(rows)


def model_card(
    model_class: str,
    description: str,
    data: dict,
    points: dict[str, tuple[float, dict]],
    near_duplicates: int,
    distinct: dict,
) -> str:
    """The card as Markdown. `data`: the split digest and image counts; `points`: name -> (threshold,
    test figures with intervals); `distinct`: the test figures without the near-duplicated images."""
    (_, served), *_ = points.values()
    return "\n\n".join([
        f"# {model_class}",
        description,
        f"## Intended use\n{INTENDED_USE}",
        f"## Limits\n{LIMITS}",
        "## Data\n"
        f"{data['fitted']} training images fitted on, {data['validation']} held out for validation (validation split "
        f"{data['split_digest']}: by each image's sha256 and the split seed), {data['test']} test images. Both "
        "thresholds were chosen on the validation images, never on the test images.",
        f"## Test figures (95 % intervals: Wilson for proportions, a stratified bootstrap for ROC-AUC)\n"
        f"ROC-AUC {_with_interval(served, 'roc_auc')}\n\n{operating_points_table(points)}",
        f"## Near-duplicates\n{near_duplicates} test images have a near-duplicate among the training images "
        f"(a 256-bit perceptual hash); without them ({distinct['distinct_test_images']} images) the served point "
        f"scores accuracy {distinct['distinct_test_accuracy']:.3f}, ROC-AUC {distinct['distinct_test_roc_auc']:.3f}.",
        "## Spread over seeds\nNot measured per version: `bench/quality.py` reports how the figures move "
        "between runs (docs/results.md).",
    ])
