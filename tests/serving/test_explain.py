"""POST /explain against the real uvicorn holding the smoke champion: the heat map points at the
regions the model's answer depends on, and bad uploads get the same clear refusals as /predict."""

import io

import numpy as np
import pytest
from PIL import Image
from serving.explain import occluded_copies, sensitivity
from skin_cancer_contract.api import (
    EXPLAIN_ROUTE,
    EXPLANATION_METHOD_HEADER,
    LARGEST_CHANGE_HEADER,
    MODEL_VERSION_HEADER,
    PROBABILITY_HEADER,
)
from tests.serving.serving_support import DATASET, encode

IMAGES_PER_CLASS = 4
RANDOM_REGIONS = 8


def test_masking_the_highlighted_region_changes_the_probability_more_than_random_regions(client, smoke_champion):
    """On real test images: mask the square the heat map rates highest (a quarter of the side, where
    the map's opacity sums highest) and, as controls, squares of the same size at random places,
    all with the image's mean colour. The highlighted one must move /predict's probability more."""
    rng = np.random.default_rng(28)
    highlighted, random = [], []
    for path in _test_images():
        image = np.asarray(Image.open(path).convert("RGB"))
        response = client.post(EXPLAIN_ROUTE, files={"file": (path.name, path.read_bytes(), "image/jpeg")})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        assert response.headers[EXPLANATION_METHOD_HEADER] == "occlusion"
        assert response.headers[MODEL_VERSION_HEADER] == smoke_champion["version"]
        side = len(image) // 4
        corners = [_hottest_square(_opacity(response.content, image.shape[:2]), side)]
        corners += [tuple(rng.integers(0, len(image) - side + 1, size=2)) for _ in range(RANDOM_REGIONS)]
        masked = [_masked(image, corner, side) for corner in corners]
        original, *changed = _probabilities(client, [image, *masked])
        assert float(response.headers[PROBABILITY_HEADER]) == pytest.approx(original, abs=1e-4)
        changes = np.abs(np.array(changed) - original)
        assert float(response.headers[LARGEST_CHANGE_HEADER]) > 0
        highlighted.append(changes[0])
        random.append(changes[1:].mean())
        print(f"{path.parent.name}/{path.name}: p={original:.4f} highlighted {changes[0]:.5f} random {changes[1:].mean():.5f}")
    print(f"mean change: highlighted {np.mean(highlighted):.5f}, random {np.mean(random):.5f}")
    assert np.mean(highlighted) > 2 * np.mean(random)
    assert sum(h > r for h, r in zip(highlighted, random)) >= 0.75 * len(highlighted)


def test_occlusion_scores_highest_the_region_a_model_reads():
    """A stand-in model whose probability is the brightness of one bright square of a dark image."""
    image = np.random.default_rng(0).integers(0, 40, (64, 64, 3), dtype=np.uint8)
    image[40:52, 8:20] = 255
    copies, corners = occluded_copies(image)
    scores = sensitivity(64, copies[:, 40:52, 8:20].mean(axis=(1, 2, 3)) / 255, corners)
    top, left = np.unravel_index(np.argmax(scores), scores.shape)
    assert 40 <= top < 52 and 8 <= left < 20
    assert scores[40:52, 8:20].min() > 0 and scores[:24, 32:].max() == 0


def test_the_heat_map_has_the_models_input_size_for_any_upload(client, lesion):
    image_size = client.get("/model").json()["image_size"]
    response = client.post(EXPLAIN_ROUTE, files={"file": ("wide.png", encode(lesion.resize((301, 157)), "PNG"), "image/png")})
    assert response.status_code == 200, response.text
    with Image.open(io.BytesIO(response.content)) as heat_map:
        assert (heat_map.format, heat_map.mode, heat_map.size) == ("PNG", "RGBA", (image_size, image_size))


@pytest.mark.parametrize(
    ("files", "status", "words"),
    [
        ({"file": ("notes.jpg", b"not an image at all", "image/jpeg")}, 415, "file 'notes.jpg'"),
        ({"file": ("notes.txt", b"hello", "text/plain")}, 415, "is not an image"),
        ([("file", ("a.jpg", b"x", "image/jpeg")), ("file", ("b.jpg", b"y", "image/jpeg"))], 422, "one image per request"),
        ({"picture": ("a.jpg", b"x", "image/jpeg")}, 422, "missing multipart field 'file'"),
    ],
)
def test_bad_uploads_get_a_clear_client_error(client, files, status, words):
    response = client.post(EXPLAIN_ROUTE, files=files)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def _test_images() -> list:
    return [path for label in ("benign", "malignant") for path in sorted((DATASET / "test" / label).glob("*.jpg"))[:IMAGES_PER_CLASS]]


def _opacity(png: bytes, shape: tuple[int, int]) -> np.ndarray:
    """The heat map's alpha channel stretched over the image, as serving's resize squeezed the image."""
    with Image.open(io.BytesIO(png)) as heat_map:
        return np.asarray(heat_map.getchannel("A").resize(shape[::-1], Image.Resampling.BILINEAR), dtype=np.float64)


def _hottest_square(opacity: np.ndarray, side: int) -> tuple[int, int]:
    """(top, left) of the side x side square whose opacity sums highest."""
    sums = np.pad(opacity.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    boxes = sums[side:, side:] - sums[:-side, side:] - sums[side:, :-side] + sums[:-side, :-side]
    top, left = np.unravel_index(np.argmax(boxes), boxes.shape)
    return int(top), int(left)


def _masked(image: np.ndarray, corner: tuple[int, int], side: int) -> np.ndarray:
    top, left = corner
    copy = image.copy()
    copy[top : top + side, left : left + side] = image.reshape(-1, 3).mean(axis=0).round()
    return copy


def _probabilities(client, images: list[np.ndarray]) -> list[float]:
    """/predict's probabilities of lossless PNGs, a few per request (the test serving takes 2 MB bodies)."""
    probabilities = []
    for start in range(0, len(images), 4):
        files = [("file", (f"{index}.png", encode(Image.fromarray(image), "PNG"), "image/png")) for index, image in enumerate(images[start : start + 4])]
        response = client.post("/predict", files=files)
        assert response.status_code == 200, response.text
        probabilities += [prediction["probability_malignant"] for prediction in response.json()["predictions"]]
    return probabilities
