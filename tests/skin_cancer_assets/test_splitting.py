"""The held-out split and the perceptual hash, on the real data set's images."""

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from skin_cancer_assets.splitting import difference_hashes, is_held_out, membership_digest, near_duplicate_pairs, rows_of
from skin_cancer_contract.imaging import decode_image
from tests.conftest import DATASET


@pytest.fixture(scope="module")
def train_ids(dataset) -> list[str]:
    return [hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted((DATASET / "train").glob("*/*.jpg"))]


def test_fifty_new_images_leave_every_old_validation_image_in_validation(train_ids):
    old, new = train_ids[:-50], train_ids[-50:]
    held_before = {image for image in old if is_held_out(image, 42, 0.2)}
    held_after = {image for image in old + new if is_held_out(image, 42, 0.2)}
    assert held_before <= held_after and held_after - held_before <= set(new)  # none moved, in either direction
    assert 0.17 < len(held_after) / len(train_ids) < 0.23  # the fraction holds on the real set


def test_the_split_seed_draws_another_split_and_the_digest_names_it(train_ids):
    seed_42 = [image for image in train_ids if is_held_out(image, 42, 0.2)]
    seed_7 = [image for image in train_ids if is_held_out(image, 7, 0.2)]
    assert len(set(seed_42) & set(seed_7)) < 0.4 * len(seed_42)
    labels = [0] * len(seed_42)
    assert membership_digest(seed_42, labels, 42, 0.2) == membership_digest(seed_42[::-1], labels, 42, 0.2)  # order-free
    assert membership_digest(seed_42, labels, 42, 0.2) != membership_digest(seed_42, [1] + labels[1:], 42, 0.2)


def test_rows_of_gives_the_fitted_and_the_held_out_rows():
    fitted, held = rows_of(["a", "b", "c", "d"], {"b", "d"})
    assert fitted.tolist() == [0, 2] and held.tolist() == [1, 3]


def test_a_re_encoded_resized_copy_is_near_and_other_lesions_are_far():
    paths = sorted((DATASET / "test" / "benign").glob("*.jpg"))[:40]
    originals = np.stack([decode_image(path.read_bytes(), 224) for path in paths])
    buffer = io.BytesIO()
    Image.open(paths[0]).resize((180, 180)).save(buffer, format="JPEG", quality=50)
    copy = decode_image(buffer.getvalue(), 224)[None]
    pairs = near_duplicate_pairs(difference_hashes(copy), difference_hashes(originals), max_distance=20)
    assert [(row, column) for row, column, _ in pairs] == [(0, 0)]
    distances = np.bitwise_count(np.bitwise_xor(difference_hashes(originals[1:]), difference_hashes(originals[:1]))).sum(axis=1)
    assert distances.min() > 20 and np.median(distances) > 60  # unrelated lesions differ in many of the 256 bits
