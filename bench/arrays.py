"""The real data set decoded and ordered exactly as `preprocessed_arrays` does it, cached for the benchmarks.

Decoding 3,297 JPEGs takes a minute or more on two cores, so each split is decoded once
and kept as .npy under the temp folder; delete `CACHE_DIR` to decode again.
"""

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

from resources.image_source import RawImageSource
from skin_cancer_assets.assets.data import PreprocessingConfig, SplitConfig
from skin_cancer_assets.environment import default_data_folder
from skin_cancer_assets.preprocessing import decode_split, shuffled_splits
from skin_cancer_assets.splitting import is_held_out, rows_of
from skin_cancer_contract.data import LABELS

CACHE_DIR = Path(tempfile.gettempdir()) / "skin-cancer-bench"


def images_path(split: str, size: int = 224) -> Path:
    return CACHE_DIR / f"{split}_images_{size}.npy"


def _entries(split: str, data: str | None) -> tuple[RawImageSource, list[dict]]:
    """The split's manifest entries in the order of its arrays."""
    source = RawImageSource(location=data or str(default_data_folder()))
    manifest = [{"split": s, "label": label, "path": path} for s, label, path in source.list_images()]
    return source, shuffled_splits(manifest, PreprocessingConfig().shuffle_seed)[split]


def image_ids(split: str, data: str | None = None) -> list[str]:
    """The sha256 of each row's source file, as `{split}_image_ids` holds them."""
    ids_file = CACHE_DIR / f"{split}_image_ids.json"
    if ids_file.is_file():
        return json.loads(ids_file.read_text())
    source, entries = _entries(split, data)
    ids = [hashlib.sha256(source.read(entry["path"])).hexdigest() for entry in entries]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    ids_file.write_text(json.dumps(ids))
    return ids


def train_rows(data: str | None = None, split: SplitConfig = SplitConfig()) -> tuple[np.ndarray, np.ndarray]:
    """(fitted, held-out) rows of the train arrays, as the `validation_split` asset draws them."""
    ids = image_ids("train", data)
    return rows_of(ids, {image for image in ids if is_held_out(image, split.split_seed, split.validation_fraction)})


def split_arrays(split: str, data: str | None = None, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images and int64 labels (0 benign, 1 malignant) of one split."""
    images_file, labels_file = images_path(split, size), CACHE_DIR / f"{split}_labels.npy"
    if images_file.is_file() and labels_file.is_file():
        return np.load(images_file, allow_pickle=False), np.load(labels_file, allow_pickle=False)
    source, entries = _entries(split, data)
    print(f"decoding {len(entries)} {split} images from {data} ...", flush=True)
    images, failures = decode_split(source, entries, size)
    if failures:
        raise SystemExit(f"could not decode {len(failures)} images, e.g. {failures[0]}")
    labels = np.array([LABELS[e["label"]] for e in entries], dtype=np.int64)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(images_file, images)
    np.save(labels_file, labels)
    return images, labels
