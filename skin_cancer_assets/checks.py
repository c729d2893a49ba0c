"""Asset checks: the arrays are what the models expect, the splits do not leak, the champion is good enough.

They run inside the asset that produces the data (declared with `check_specs`), so a check
costs no extra process and no reload of the arrays; blocking checks stop downstream steps.
"""

import dagster as dg
import numpy as np

from skin_cancer_assets.election import Decision
from skin_cancer_assets.preprocessing import images_per_split_and_class
from skin_cancer_contract.data import LABELS, SPLITS

NO_TRAIN_TEST_LEAK = dg.AssetCheckSpec(
    "no_train_test_leak", asset="raw_images", blocking=True, description="No image (by sha256) is in both train and test."
)
DATA_GATES = [
    dg.AssetCheckSpec(
        "enough_images_per_class", asset="raw_images", blocking=True,
        description="Every split and class has at least DataGatesConfig.min_images_per_class accepted images.",
    ),
    dg.AssetCheckSpec(
        "few_rejected_files", asset="raw_images", blocking=True,
        description="At most DataGatesConfig.max_rejected_share of the listed files are unreadable.",
    ),
    dg.AssetCheckSpec(
        "no_sudden_shrinkage", asset="raw_images", blocking=True,
        description="The data lost at most DataGatesConfig.max_shrinkage of its images since the last materialization.",
    ),
]
NO_NEAR_DUPLICATES = dg.AssetCheckSpec(
    "no_near_duplicates_across_splits", asset="validation_split",
    description="No perceptual near-duplicate pairs across fitted, validation and test images "
    "(a warning: a duplicate across splits flatters the scores measured on the later split).",
)
ARRAY_SHAPES = [
    dg.AssetCheckSpec(
        "arrays_shape", asset=f"{split}_images", blocking=True,
        description="uint8 NHWC images at the profile's size, one 0/1 label each.",
    )
    for split in SPLITS
]
CLASS_COUNTS = dg.AssetCheckSpec(
    "class_counts", asset="train_labels", blocking=True,
    description="Both classes present in both splits; no more labels than manifest images.",
)
CHAMPION_QUALITY = dg.AssetCheckSpec(
    "quality_bar", asset="champion_model", blocking=True,
    description="The champion after the election reaches ChampionConfig.min_roc_auc on the validation split; "
    "evaluated before the alias moves, and a failure fails the run with the alias untouched.",
)


def no_train_test_leak(manifest: dict) -> dg.AssetCheckResult:
    by_split = {s: {e["sha256"]: e["path"] for e in manifest["images"] if e["split"] == s} for s in ("train", "test")}
    shared = sorted(set(by_split["train"]) & set(by_split["test"]))
    return dg.AssetCheckResult(
        asset_key="raw_images",
        check_name=NO_TRAIN_TEST_LEAK.name,
        passed=not shared,
        metadata={
            "images_in_both": len(shared),
            "examples": dg.MetadataValue.json([[by_split["train"][h], by_split["test"][h]] for h in shared[:20]]),
        },
    )


def data_gates(manifest: dict, listed: int, previous_images: int | None, config) -> list[dg.AssetCheckResult]:
    """The blocking gates new data must pass before anything trains on it (`DataGatesConfig`)."""
    counts = images_per_split_and_class(manifest["images"])
    too_few = {group: count for group, count in counts.items() if count < config.min_images_per_class}
    rejected_share = len(manifest["rejected"]) / max(1, listed)
    images = len(manifest["images"])
    shrinkage = 0.0 if not previous_images else max(0.0, 1 - images / previous_images)
    return [
        dg.AssetCheckResult(
            asset_key="raw_images", check_name="enough_images_per_class", passed=not too_few,
            metadata={"minimum": config.min_images_per_class, "counts": dg.MetadataValue.json(counts),
                      "too_few": dg.MetadataValue.json(too_few)},
        ),
        dg.AssetCheckResult(
            asset_key="raw_images", check_name="few_rejected_files", passed=rejected_share <= config.max_rejected_share,
            metadata={"rejected_share": rejected_share, "maximum": config.max_rejected_share,
                      "rejected": len(manifest["rejected"]), "listed": listed},
        ),
        dg.AssetCheckResult(
            asset_key="raw_images", check_name="no_sudden_shrinkage", passed=shrinkage <= config.max_shrinkage,
            metadata={"images": images, "previous_images": previous_images if previous_images else "none",
                      "shrinkage": shrinkage, "maximum": config.max_shrinkage},
        ),
    ]


def no_near_duplicates(pairs_by_splits: dict[str, list[tuple[str, str, int]]], max_bits: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key="validation_split",
        check_name=NO_NEAR_DUPLICATES.name,
        passed=not any(pairs_by_splits.values()),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "max_hash_distance_bits": max_bits,
            **{f"pairs_{splits.replace('-', '_')}": len(pairs) for splits, pairs in pairs_by_splits.items()},
            "examples": dg.MetadataValue.json({splits: pairs[:10] for splits, pairs in pairs_by_splits.items()}),
        },
    )


def arrays_shape(split: str, images: np.ndarray, labels: np.ndarray, size: int) -> dg.AssetCheckResult:
    problems = []
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
        problems.append(f"images are {images.dtype} {images.shape}, expected uint8 (N, {size}, {size}, 3)")
    if labels.ndim != 1 or len(labels) != len(images):
        problems.append(f"{len(labels)} labels for {len(images)} images")
    if not np.isin(labels, (0, 1)).all():
        problems.append("labels other than 0 and 1")
    return dg.AssetCheckResult(
        asset_key=f"{split}_images",
        check_name="arrays_shape",
        passed=not problems,
        metadata={"shape": str(images.shape), "dtype": str(images.dtype), "problems": "; ".join(problems) or "none"},
    )


def class_counts(manifest: dict, labels_by_split: dict[str, np.ndarray]) -> dg.AssetCheckResult:
    counts, problems = {}, []
    for split, labels in labels_by_split.items():
        for name, index in LABELS.items():
            expected = sum(e["split"] == split and e["label"] == name for e in manifest["images"])
            actual = int(np.sum(labels == index))
            counts[f"{split}/{name}"] = actual
            if actual == 0:
                problems.append(f"no {name} images in {split}")
            elif actual > expected:
                problems.append(f"{split}/{name}: {actual} labels but {expected} images in the manifest")
    return dg.AssetCheckResult(
        asset_key="train_labels",
        check_name=CLASS_COUNTS.name,
        passed=not problems,
        metadata={"counts": dg.MetadataValue.json(counts), "problems": "; ".join(problems) or "none"},
    )


def champion_quality(decision: Decision, bar: float) -> dg.AssetCheckResult:
    champion = decision.champion
    return dg.AssetCheckResult(
        asset_key="champion_model",
        check_name=CHAMPION_QUALITY.name,
        passed=decision.meets_bar,
        metadata={
            "minimum_validation_roc_auc": bar,
            "decision": decision.outcome,
            "reason": decision.reason,
            "champion": champion.label if champion else "none",
            **({"champion_validation_roc_auc": champion.roc_auc} if champion else {}),
            "best_candidate": decision.challenger.label,
            "best_candidate_validation_roc_auc": decision.challenger.roc_auc,
        },
    )
