"""Preprocessing as plain functions: the manifest's digest, the seeded split order, parallel decoding.

No Dagster here: the data assets call these, and so do the benchmarks, so both decode the
same images in the same order.
"""

import hashlib
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from skin_cancer_contract.data import CLASSES, SPLITS
from skin_cancer_contract.imaging import ImageDecodeError, decode_image, open_image

WORKERS = 2 * (os.cpu_count() or 1)


class ImageReader(Protocol):
    def read(self, relative_path: str) -> bytes: ...


def manifest_digest(entries: list[dict]) -> str:
    """Digest of what the images are, so unchanged data keeps its data version."""
    canonical = json.dumps([[e["path"], e["split"], e["label"], e["sha256"]] for e in entries])
    return hashlib.sha256(canonical.encode()).hexdigest()


def inspect_image(source: ImageReader, split: str, label: str, path: str) -> dict:
    """A manifest entry for one file: its sha256 and size, or the reason it cannot be used."""
    entry = {"path": path, "split": split, "label": label}
    try:
        data = source.read(path)
        with open_image(data) as image:  # JPEG or PNG only, as serving accepts
            image.load()  # a full decode: truncated files fail here, not in training
    except Exception as error:  # any unreadable file is rejected, never fatal
        return {**entry, "reason": f"{type(error).__name__}: {error}" if str(error) else type(error).__name__}
    return {**entry, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def inspect_all(source: ImageReader, listed: list[tuple[str, str, str]]) -> list[dict]:
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(lambda item: inspect_image(source, *item), listed))


def images_per_split_and_class(entries: list[dict]) -> dict[str, int]:
    """How many of `entries` each split and class holds, as "split/class" (every pair, 0 included)."""
    found = Counter(f"{entry['split']}/{entry['label']}" for entry in entries)
    return {f"{split}/{label}": found[f"{split}/{label}"] for split in SPLITS for label in CLASSES}


def first_per_class(listed: list[tuple], cap: int | None) -> list[tuple]:
    """The first `cap` files of every split and class, in the listing's order (all when `cap` is
    None); each item starts with its split and class."""
    if cap is None:
        return list(listed)
    taken: dict[tuple[str, str], int] = {}
    kept = []
    for item in listed:
        split_and_class = item[:2]
        if taken.get(split_and_class, 0) < cap:
            taken[split_and_class] = taken.get(split_and_class, 0) + 1
            kept.append(item)
    return kept


def listing_digest(stamped: list[tuple[str, str, str, str]]) -> str:
    """Digest of a stamped listing (split, class, path, stamp): it moves when a file is added,
    removed, renamed, moved or rewritten, without reading any image."""
    return hashlib.sha256(json.dumps([list(item) for item in stamped]).encode()).hexdigest()


def shuffled_splits(entries: list[dict], seed: int) -> dict[str, list[dict]]:
    """Each split's manifest entries in the seeded order of its arrays (one generator, train first)."""
    rng = np.random.default_rng(seed)
    ordered = {}
    for split in SPLITS:
        in_split = [e for e in entries if e["split"] == split]
        ordered[split] = [in_split[i] for i in rng.permutation(len(in_split))]
    return ordered


def decode_split(source: ImageReader, entries: list[dict], size: int) -> tuple[np.ndarray, list[dict]]:
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
