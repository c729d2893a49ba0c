"""The data group: the raw image manifest and the preprocessed uint8 arrays."""

import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import numpy as np
from PIL import Image

from resources.image_source import CLASSES, RawImageSource
from skin_cancer_assets import checks
from skin_cancer_assets.imaging import ImageDecodeError, decode_image
from skin_cancer_assets.profiles import active_profile
from skin_cancer_assets.versioning import code_version

LABELS = {name: index for index, name in enumerate(CLASSES)}  # 0 benign, 1 malignant
WORKERS = 2 * (os.cpu_count() or 1)


def manifest_digest(entries: list[dict]) -> str:
    """Digest of what the images are, so unchanged data keeps its data version."""
    canonical = json.dumps([[e["path"], e["split"], e["label"], e["sha256"]] for e in entries])
    return hashlib.sha256(canonical.encode()).hexdigest()


def _inspect(source: RawImageSource, item: tuple[str, str, str]) -> dict:
    split, label, path = item
    entry = {"path": path, "split": split, "label": label}
    try:
        data = source.read(path)
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # a full decode: truncated files fail here, not in training
    except Exception as error:  # any unreadable file is rejected, never fatal
        return {**entry, "reason": f"{type(error).__name__}: {error}" if str(error) else type(error).__name__}
    return {**entry, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


@dg.asset(
    group_name="data",
    code_version=code_version(_inspect, manifest_digest),
    check_specs=[checks.NO_TRAIN_TEST_LEAK],
)
def raw_images(context: dg.AssetExecutionContext, image_source: RawImageSource):
    """Manifest of the source images: split, class, relative path, sha256 and size of each.

    Files that are not readable images are rejected with a reason; the run goes on.
    """
    profile = active_profile()
    listed = image_source.list_images()
    if profile.max_images_per_class is not None:
        listed = _first_per_class(listed, profile.max_images_per_class)
    with ThreadPoolExecutor(WORKERS) as pool:
        inspected = list(pool.map(lambda item: _inspect(image_source, item), listed))
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


def _first_per_class(listed: list[tuple[str, str, str]], cap: int) -> list[tuple[str, str, str]]:
    taken: dict[tuple[str, str], int] = {}
    kept = []
    for split, label, path in listed:
        if taken.get((split, label), 0) < cap:
            taken[(split, label)] = taken.get((split, label), 0) + 1
            kept.append((split, label, path))
    return kept


class PreprocessingConfig(dg.Config):
    shuffle_seed: int = 42


def shuffled_splits(entries: list[dict], seed: int) -> dict[str, list[dict]]:
    """Each split's manifest entries in the seeded order of its arrays (one generator, train first)."""
    rng = np.random.default_rng(seed)
    ordered = {}
    for split in ("train", "test"):
        in_split = [e for e in entries if e["split"] == split]
        ordered[split] = [in_split[i] for i in rng.permutation(len(in_split))]
    return ordered


def decode_split(source: RawImageSource, entries: list[dict], size: int) -> tuple[np.ndarray, list[dict]]:
    """Decode `entries` into one preallocated uint8 array with both cores; returns it and the failures."""
    images = np.empty((len(entries), size, size, 3), dtype=np.uint8)
    ok = np.ones(len(entries), dtype=bool)
    failures = []

    def decode_into(index: int) -> None:
        try:
            images[index] = decode_image(source.read(entries[index]["path"]), size)
        except ImageDecodeError as error:
            ok[index] = False
            failures.append({"path": entries[index]["path"], "reason": str(error)})

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(decode_into, range(len(entries))))
    return (images if ok.all() else images[ok]), failures


PREPROCESSING_VERSION = code_version(decode_image, decode_split)


@dg.multi_asset(
    group_name="data",
    outs={
        "train_images": dg.AssetOut(description="Training images, uint8 NHWC RGB.", code_version=PREPROCESSING_VERSION),
        "train_labels": dg.AssetOut(description="Training labels: 0 benign, 1 malignant.", code_version=PREPROCESSING_VERSION),
        "test_images": dg.AssetOut(description="Held-out test images, uint8 NHWC RGB.", code_version=PREPROCESSING_VERSION),
        "test_labels": dg.AssetOut(description="Held-out test labels: 0 benign, 1 malignant.", code_version=PREPROCESSING_VERSION),
    },
    required_resource_keys={"mlflow", "image_source"},
    check_specs=[*checks.ARRAY_SHAPES, checks.CLASS_COUNTS],
)
def preprocessed_arrays(context: dg.AssetExecutionContext, config: PreprocessingConfig, raw_images: dict):
    """Decode, resize and shuffle the manifest's images into uint8 arrays, one pair per split.

    No float copy of the set is ever made: models scale their own inputs.
    """
    size = active_profile().image_size
    source = context.resources.image_source
    context.resources.mlflow.log_params(
        {"data_digest": raw_images["digest"], "data_location": raw_images["location"], "image_size": size}
    )
    labels_by_split = {}
    for split, entries in shuffled_splits(raw_images["images"], config.shuffle_seed).items():
        images, failures = decode_split(source, entries, size)
        for failure in failures:
            context.log.warning(f"could not decode {source.describe(failure['path'])}: {failure['reason']}")
        failed = {f["path"] for f in failures}
        labels = np.array([LABELS[e["label"]] for e in entries if e["path"] not in failed], dtype=np.int64)
        class_counts = {name: int(np.sum(labels == index)) for name, index in LABELS.items()}
        context.resources.mlflow.log_params({f"{split}_{name}": n for name, n in class_counts.items()})
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
        yield checks.arrays_shape(split, images, labels)
        labels_by_split[split] = labels
    yield checks.class_counts(raw_images, labels_by_split)
