"""The data group: the raw image manifest and the preprocessed uint8 arrays."""

import dagster as dg
import numpy as np

from resources.image_source import RawImageSource
from resources.mlflow_tracking import MlflowTracking
from skin_cancer_assets import checks
from skin_cancer_assets.preprocessing import (
    decode_split,
    first_per_class,
    inspect_all,
    inspect_image,
    manifest_digest,
    shuffled_splits,
)
from skin_cancer_assets.production import statistics_table
from skin_cancer_assets.profiles import Profile
from skin_cancer_assets.versioning import code_version
from skin_cancer_contract.data import LABELS, SPLITS
from skin_cancer_contract.imaging import decode_image
from skin_cancer_contract.monitoring import channel_statistics


@dg.asset(
    group_name="data",
    code_version=code_version(inspect_image, manifest_digest),
    check_specs=[checks.NO_TRAIN_TEST_LEAK],
)
def raw_images(context: dg.AssetExecutionContext, image_source: RawImageSource, profile: Profile):
    """Manifest of the source images: split, class, relative path, sha256 and size of each.

    Files that are not readable images are rejected with a reason; the run goes on.
    """
    listed = first_per_class(image_source.list_images(), profile.max_images_per_class)
    inspected = inspect_all(image_source, listed)
    accepted = [e for e in inspected if "reason" not in e]
    rejected = [e for e in inspected if "reason" in e]
    for entry in rejected:
        context.log.warning(f"rejected {image_source.describe(entry['path'])}: {entry['reason']}")
    counts = {f"{s}/{c}": sum(e["split"] == s and e["label"] == c for e in accepted) for s, c, _ in listed}
    digest = manifest_digest(accepted)
    manifest = {"location": image_source.location, "digest": digest, "images": accepted, "rejected": rejected}
    yield dg.Output(
        manifest,
        data_version=dg.DataVersion(digest),
        metadata={
            "source": image_source.location,
            "images": len(accepted),
            "rejected": len(rejected),
            "rejected_files": dg.MetadataValue.json([{k: e[k] for k in ("path", "reason")} for e in rejected]),
            "counts": dg.MetadataValue.json(counts),
            "bytes": sum(e["bytes"] for e in accepted),
            "digest": digest,
            "profile": profile.name,
        },
    )
    yield checks.no_train_test_leak(manifest)


class PreprocessingConfig(dg.Config):
    shuffle_seed: int = 42


PREPROCESSING_VERSION = code_version(decode_image, decode_split)
STATISTICS_VERSION = code_version(decode_image, decode_split, channel_statistics, statistics_table)


@dg.multi_asset(
    group_name="data",
    outs={
        "train_images": dg.AssetOut(description="Training images, uint8 NHWC RGB.", code_version=PREPROCESSING_VERSION),
        "train_labels": dg.AssetOut(description="Training labels: 0 benign, 1 malignant.", code_version=PREPROCESSING_VERSION),
        "test_images": dg.AssetOut(description="Held-out test images, uint8 NHWC RGB.", code_version=PREPROCESSING_VERSION),
        "test_labels": dg.AssetOut(description="Held-out test labels: 0 benign, 1 malignant.", code_version=PREPROCESSING_VERSION),
        **{
            f"{split}_image_ids": dg.AssetOut(
                description=f"The sha256 of each {split} image's source file, row by row of `{split}_images`.",
                code_version=PREPROCESSING_VERSION,
            )
            for split in SPLITS
        },
        "train_image_statistics": dg.AssetOut(
            description="Per-channel mean and standard deviation of each training image, as serving logs them for "
            "each prediction: the reference of production_drift, a few KB instead of the images.",
            code_version=STATISTICS_VERSION,
        ),
    },
    check_specs=[*checks.ARRAY_SHAPES, checks.CLASS_COUNTS],
)
def preprocessed_arrays(
    context: dg.AssetExecutionContext,
    config: PreprocessingConfig,
    raw_images: dict,
    image_source: RawImageSource,
    profile: Profile,
    mlflow: MlflowTracking,
):
    """Decode, resize and shuffle the manifest's images into uint8 arrays, one pair per split, and
    the sha256 of each row's source file (so a model's training images can be named later).

    No float copy of the set is ever made: models scale their own inputs.
    """
    size = profile.image_size
    mlflow.log_params({"data_digest": raw_images["digest"], "data_location": raw_images["location"], "image_size": size})
    labels_by_split = {}
    for split, entries in shuffled_splits(raw_images["images"], config.shuffle_seed).items():
        images, failures = decode_split(image_source, entries, size)
        for failure in failures:
            context.log.warning(f"could not decode {image_source.describe(failure['path'])}: {failure['reason']}")
        failed = {f["path"] for f in failures}
        labels = np.array([LABELS[e["label"]] for e in entries if e["path"] not in failed], dtype=np.int64)
        class_counts = {name: int(np.sum(labels == index)) for name, index in LABELS.items()}
        mlflow.log_params({f"{split}_{name}": n for name, n in class_counts.items()})
        yield dg.Output(
            images,
            output_name=f"{split}_images",
            metadata={
                "shape": str(images.shape),
                "dtype": str(images.dtype),
                "megabytes": round(images.nbytes / 2**20, 1),
                "decode_failures": len(failures),
            },
        )
        yield dg.Output(labels, output_name=f"{split}_labels", metadata={"count": len(labels), **class_counts})
        image_ids = [e["sha256"] for e in entries if e["path"] not in failed]
        yield dg.Output(image_ids, output_name=f"{split}_image_ids", metadata={"count": len(image_ids)})
        if split == "train":
            statistics = statistics_table(*channel_statistics(images))
            yield dg.Output(statistics, output_name="train_image_statistics", metadata={"shape": str(statistics.shape)})
        yield checks.arrays_shape(split, images, labels, size)
        labels_by_split[split] = labels
    yield checks.class_counts(raw_images, labels_by_split)
