"""The data group: the raw image manifest, its gates, the preprocessed uint8 arrays and the
held-out validation split."""

import dagster as dg
import numpy as np
from pydantic import Field

from resources.image_source import RawImageSource
from resources.mlflow_tracking import MlflowTracking
from skin_cancer_assets import checks
from skin_cancer_assets.preprocessing import (
    decode_split,
    first_per_class,
    images_per_split_and_class,
    inspect_all,
    inspect_image,
    listing_digest,
    manifest_digest,
    shuffled_splits,
)
from skin_cancer_assets.production import statistics_table
from skin_cancer_assets.profiles import Profile
from skin_cancer_assets.splitting import difference_hashes, is_held_out, membership_digest, near_duplicate_pairs, rows_of
from skin_cancer_assets.training_config import with_defaults
from skin_cancer_assets.versioning import code_version
from skin_cancer_contract.data import LABELS, SPLITS
from skin_cancer_contract.imaging import decode_image
from skin_cancer_contract.monitoring import channel_statistics


SOURCE_DIGEST_TAG = "skin_cancer/source_digest"
"""Run tag of a retrain: the listing digest of the data source the retrain sensor saw settle."""


class DataGatesConfig(dg.Config):
    """What new data must pass before anything trains on it (blocking checks of `raw_images`)."""

    min_images_per_class: int = Field(default=100, ge=1, description="Fewest accepted images in each split and class.")
    max_rejected_share: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Largest share of listed files rejected as unreadable."
    )
    max_shrinkage: float = Field(
        default=0.10, ge=0.0, le=1.0,
        description="Largest share of images the data may lose against the previous materialization of raw_images "
        "(an accidental deletion must not retrain).",
    )


def data_gates_config_for(profile: Profile) -> type[DataGatesConfig]:
    """The launchpad's data gates, with the profile's minimum per class as the default."""
    return with_defaults(DataGatesConfig, "DataGatesConfig", {"min_images_per_class": profile.min_images_per_class})


def _listing_seen_by_the_sensor(context: dg.AssetExecutionContext, stamped: list[tuple], location: str) -> None:
    """Fail when a retrain's source changed after the sensor saw it settle: train on what was seen."""
    expected = context.run.tags.get(SOURCE_DIGEST_TAG)
    if expected and (found := listing_digest(stamped)) != expected:
        raise dg.Failure(
            f"the data in {location} changed after the retrain sensor saw it settle (listing digest "
            f"{found[:12]}, the run was launched for {expected[:12]}); nothing was read. "
            "The sensor launches another run once the source is quiet again."
        )


def _previous_image_count(context: dg.AssetExecutionContext) -> int | None:
    event = context.instance.get_latest_materialization_event(context.asset_key)
    images = event.asset_materialization.metadata.get("images") if event and event.asset_materialization else None
    return int(images.value) if images else None


def raw_images_asset(profile: Profile) -> dg.AssetsDefinition:
    """`raw_images` with the profile's data gates as launchpad defaults."""
    config_class = data_gates_config_for(profile)

    @dg.asset(
        name="raw_images",
        group_name="data",
        code_version=code_version(inspect_image, manifest_digest),
        check_specs=[checks.NO_TRAIN_TEST_LEAK, *checks.DATA_GATES],
    )
    def raw_images(context: dg.AssetExecutionContext, config: config_class, image_source: RawImageSource, profile: Profile):
        """Manifest of the source images: split, class, relative path, sha256 and size of each.

        Files that are not readable images are rejected with a reason; the run goes on unless the
        data gates fail. A retrain reads the listing the sensor saw, or fails saying it changed.
        """
        stamped = first_per_class(image_source.list_stamped_images(), profile.max_images_per_class)
        _listing_seen_by_the_sensor(context, stamped, image_source.location)
        listed = [item[:3] for item in stamped]
        previous_images = _previous_image_count(context)  # before this run's materialization becomes the latest
        manifest, metadata = _manifest(context, image_source, listed)
        yield dg.Output(manifest, data_version=dg.DataVersion(manifest["digest"]), metadata={**metadata, "profile": profile.name})
        yield checks.no_train_test_leak(manifest)
        yield from checks.data_gates(manifest, len(listed), previous_images, config)

    return raw_images


def _manifest(context, image_source: RawImageSource, listed: list[tuple[str, str, str]]) -> tuple[dict, dict]:
    inspected = inspect_all(image_source, listed)
    accepted = [e for e in inspected if "reason" not in e]
    rejected = [e for e in inspected if "reason" in e]
    for entry in rejected:
        context.log.warning(f"rejected {image_source.describe(entry['path'])}: {entry['reason']}")
    digest = manifest_digest(accepted)
    manifest = {"location": image_source.location, "digest": digest, "images": accepted, "rejected": rejected}
    return manifest, {
        "source": image_source.location,
        "images": len(accepted),
        "rejected": len(rejected),
        "rejected_files": dg.MetadataValue.json([{k: e[k] for k in ("path", "reason")} for e in rejected]),
        "counts": dg.MetadataValue.json(images_per_split_and_class(accepted)),
        "bytes": sum(e["bytes"] for e in accepted),
        "digest": digest,
    }


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
            "each prediction: the reference of production_drift, about 127 KB instead of the images.",
            code_version=STATISTICS_VERSION,
        ),
        "perceptual_hashes": dg.AssetOut(
            description="A 256-bit difference hash of each image, row by row, per split: finds near-duplicates.",
            code_version=code_version(decode_image, decode_split, difference_hashes),
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
    labels_by_split, hashes = {}, {}
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
        hashes[split] = [row.tobytes().hex() for row in difference_hashes(images)]
    yield dg.Output(hashes, output_name="perceptual_hashes", metadata={split: len(rows) for split, rows in hashes.items()})
    yield checks.class_counts(raw_images, labels_by_split)


class SplitConfig(dg.Config):
    """How the validation split is drawn; every model step, the ensemble and the election read it."""

    validation_fraction: float = Field(
        default=0.2, gt=0.0, lt=1.0,
        description="Expected share of `train` held out: early stopping, decision thresholds and the election.",
    )
    split_seed: int = Field(default=42, description="Draws which images are held out (with each image's sha256).")


NEAR_DUPLICATE_BITS = 20
"""Hashes at most this many of their 256 bits apart are near-duplicates. Checked by eye on the data
set: pairs up to 24 bits apart were the same lesion photographed again or re-encoded; at 32 the first
unrelated lesions on plain skin appear."""


def validation_split_asset(profile: Profile) -> dg.AssetsDefinition:
    """`validation_split` with the profile's validation fraction as the launchpad default."""
    config_class = with_defaults(SplitConfig, "SplitConfig", {"validation_fraction": profile.validation_fraction})

    @dg.asset(
        name="validation_split",
        group_name="data",
        code_version=code_version(is_held_out, membership_digest, near_duplicate_pairs),
        check_specs=[checks.NO_NEAR_DUPLICATES],
    )
    def validation_split(
        config: config_class,
        raw_images: dict,
        train_image_ids: list[str],
        train_labels: np.ndarray,
        test_image_ids: list[str],
        perceptual_hashes: dict,
    ):
        """The training images held out for validation, by sha256, with their labels.

        An image is held out when a hash of its sha256 and `split_seed` falls below the validation
        fraction, so new images never move old ones and a model trained on earlier data has seen
        none of today's validation images. Near-duplicates across fitted, validation and test
        images are counted.
        """
        yield from _split(config, raw_images, train_image_ids, train_labels, test_image_ids, perceptual_hashes)

    return validation_split


def _split(config: SplitConfig, raw_images, train_image_ids, train_labels, test_image_ids, perceptual_hashes):
    """The split's record and its near-duplicate check."""
    held_out = {
        image: int(label)
        for image, label in zip(train_image_ids, train_labels)
        if is_held_out(image, config.split_seed, config.validation_fraction)
    }
    digest = membership_digest(list(held_out), list(held_out.values()), config.split_seed, config.validation_fraction)
    counts = {f"validation/{name}": sum(label == index for label in held_out.values()) for name, index in LABELS.items()}
    counts |= {f"fitted/{name}": int(np.sum(train_labels == index)) - counts[f"validation/{name}"] for name, index in LABELS.items()}
    missing = [group for group, count in counts.items() if count == 0]
    if missing:
        raise dg.Failure(f"the validation split (fraction {config.validation_fraction}, seed {config.split_seed}) leaves "
                         f"no images in {', '.join(missing)}; add images or change SplitConfig")
    fitted, validation = rows_of(train_image_ids, set(held_out))
    pairs = _near_duplicates(train_image_ids, test_image_ids, perceptual_hashes, {"fitted": fitted, "validation": validation})
    record = {
        "split_seed": config.split_seed,
        "validation_fraction": config.validation_fraction,
        "digest": digest,
        "validation_images": held_out,
        "near_duplicate_test_images": sorted({test for splits in ("fitted-test", "validation-test") for _, test, _ in pairs[splits]}),
    }
    yield dg.Output(
        record,
        data_version=dg.DataVersion(digest),
        metadata={"digest": digest, **counts, "test_images_with_a_near_duplicate_in_train": len(record["near_duplicate_test_images"])},
    )
    path_of = {entry["sha256"]: entry["path"] for entry in raw_images["images"]}
    named = {splits: [(path_of[a], path_of[b], d) for a, b, d in found] for splits, found in pairs.items()}
    yield checks.no_near_duplicates(named, NEAR_DUPLICATE_BITS)


def _near_duplicates(train_ids: list[str], test_ids: list[str], hashes: dict, rows: dict) -> dict:
    """Near-duplicate pairs across fitted, validation and test images, by split pair: each as the
    two images' sha256 and the hashes' distance in bits."""
    as_array = {
        split: np.frombuffer(bytes.fromhex("".join(rows)), dtype=np.uint8).reshape(len(rows), -1)
        for split, rows in hashes.items()
    }
    members = {
        "fitted": (as_array["train"][rows["fitted"]], [train_ids[i] for i in rows["fitted"]]),
        "validation": (as_array["train"][rows["validation"]], [train_ids[i] for i in rows["validation"]]),
        "test": (as_array["test"], test_ids),
    }
    found = {}
    for first, second in (("fitted", "validation"), ("fitted", "test"), ("validation", "test")):
        (first_hashes, first_ids), (second_hashes, second_ids) = members[first], members[second]
        found[f"{first}-{second}"] = [
            (first_ids[a], second_ids[b], distance)
            for a, b, distance in near_duplicate_pairs(first_hashes, second_hashes, NEAR_DUPLICATE_BITS)
        ]
    return found
