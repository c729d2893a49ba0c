"""The held-out validation split and near-duplicate images, as plain functions (no Dagster).

An image is held out when a hash of its sha256 and the split seed falls below the validation
fraction. Membership depends on nothing else, so new images never move old ones: an image held
out once stays held out, and a model trained on yesterday's data has never seen any of today's
validation images.
"""

import hashlib

import numpy as np


def is_held_out(image_sha256: str, split_seed: int, validation_fraction: float) -> bool:
    """Whether the image with this sha256 belongs to the validation split drawn by `split_seed`."""
    drawn = hashlib.sha256(f"{split_seed}:{image_sha256}".encode()).digest()
    return int.from_bytes(drawn[:8], "big") / 2**64 < validation_fraction


def membership_digest(held_out: list[str], labels: list[int], split_seed: int, validation_fraction: float) -> str:
    """Names one validation split: which images (sorted sha256), their labels and how it was drawn."""
    pairs = sorted(zip(held_out, labels))
    canonical = f"{split_seed}:{validation_fraction}:" + ",".join(f"{image}={label}" for image, label in pairs)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def rows_of(image_ids: list[str], held_out: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of `image_ids` (a train array's rows) that are fitted on and held out."""
    mask = np.array([image_id in held_out for image_id in image_ids], dtype=bool)
    rows = np.arange(len(image_ids))
    return rows[~mask], rows[mask]


HASH_SIDE = 16
"""The difference hash compares neighbouring pixels of a side x (side + 1) grey thumbnail: 256 bits.
At 8 (64 bits) unrelated lesions on plain skin collide; at 16 a few bits apart means the same picture."""


def difference_hashes(images: np.ndarray) -> np.ndarray:
    """A perceptual hash (dHash) of each uint8 NHWC image: one row of HASH_SIDE**2 bits, packed.

    Two copies of the same photograph, re-encoded or resized, keep almost every bit; unrelated
    images differ in about half of them.
    """
    from PIL import Image

    hashes = np.empty((len(images), HASH_SIDE * HASH_SIDE // 8), dtype=np.uint8)
    for row, image in enumerate(images):
        grey = Image.fromarray(image).convert("L").resize((HASH_SIDE + 1, HASH_SIDE), Image.Resampling.BOX)
        pixels = np.asarray(grey, dtype=np.int16)
        hashes[row] = np.packbits(pixels[:, 1:] > pixels[:, :-1])
    return hashes


def near_duplicate_pairs(first: np.ndarray, second: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    """(row in first, row in second, Hamming distance) of every pair of hashes at most
    `max_distance` bits apart."""
    pairs = []
    for row, value in enumerate(first):
        distances = np.bitwise_count(np.bitwise_xor(second, value)).sum(axis=1)
        pairs += [(row, int(column), int(distances[column])) for column in np.flatnonzero(distances <= max_distance)]
    return pairs
