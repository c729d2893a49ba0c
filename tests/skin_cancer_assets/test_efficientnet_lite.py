"""The EfficientNet-Lite0 port on real weights: it classifies real photos, and the reader refuses bad files."""

import hashlib
import os
import pickle

import keras
import numpy as np
import pytest
from PIL import Image
from skimage import data

from skin_cancer_assets import efficientnet_lite as effnet

SIZE = 224
CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968}  # espresso, cup


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return effnet.read_torch_legacy(effnet.weights_path())


@pytest.fixture(scope="module")
def classifier(state):
    """uint8 images -> the zoo's [0, 1] scaling -> the weights' scaling -> ImageNet probabilities.

    Returns the model, the entries the weights loader used, and the backbone alone (scaled input)."""
    images = keras.Input((SIZE, SIZE, 3), dtype="uint8")
    unit = keras.layers.Rescaling(1.0 / 255)(images)  # as model_zoo.build_model does
    scaled = effnet.imagenet_scaling()(unit)
    probs = effnet.efficientnet_lite0(scaled, include_top=True)
    model = keras.Model(images, probs)
    used = effnet.load_imagenet_weights(model, state)
    return model, used, keras.Model(scaled, probs)


def _photos() -> np.ndarray:
    """scikit-image's cat and coffee photos, resized as the project's decoder does (bilinear)."""
    photos = (Image.fromarray(photo).resize((SIZE, SIZE), Image.Resampling.BILINEAR) for photo in (data.chelsea(), data.coffee()))
    return np.stack([np.asarray(photo) for photo in photos])


def test_real_photos_get_their_imagenet_classes(classifier):
    model, _, _ = classifier
    cat, coffee = np.argsort(model.predict(_photos(), verbose=0), axis=1)[:, ::-1][:, :5]
    assert set(cat) & CATS, f"chelsea top-5 {cat}"
    assert cat[0] in CATS
    assert set(coffee) & COFFEE, f"coffee top-5 {coffee}"


def test_inputs_are_scaled_as_the_weights_expect(classifier):
    """(x - 127) / 128 exactly: /255 or ImageNet mean/std give other probabilities, though similar top classes."""
    model, _, backbone = classifier
    photos = _photos()
    pixels = photos.astype(np.float32)
    probs = model.predict(photos, verbose=0)
    np.testing.assert_allclose(backbone.predict((pixels - 127) / 128, verbose=0), probs, atol=1e-5)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for wrong in (pixels / 255, (pixels / 255 - mean) / std):
        assert np.abs(backbone.predict(wrong, verbose=0) - probs).max() > 0.05


def test_every_checkpoint_entry_is_used(classifier, state):
    model, used, _ = classifier
    counters = {name for name in state if name.endswith(".num_batches_tracked")}
    assert len(state) == 296 and len(counters) == 49
    assert used == set(state) - counters
    assert sum(state[name].size for name in used) == model.count_params() == 4_694_073 - len(counters)


def test_a_flipped_byte_is_refused(tmp_path):
    corrupted = tmp_path / "lite0.pth"
    raw = bytearray(effnet.weights_path().read_bytes())
    raw[len(raw) // 2] ^= 0x01
    corrupted.write_bytes(raw)
    with pytest.raises(effnet.WeightsError, match=r"lite0\.pth: sha256 is [0-9a-f]{64}, expected " + effnet.WEIGHTS_SHA256):
        effnet.read_torch_legacy(corrupted)


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _legacy_file(path, *pickles) -> str:
    """Write pickles one after the other, as torch's legacy format does; return the file's digest."""
    with open(path, "wb") as f:
        for obj in pickles:
            pickle.dump(obj, f, protocol=2)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_pickle_that_runs_a_command_is_refused(tmp_path):
    """Even with a matching digest: the reader's own allow-list stops it before the call."""
    payload = _RunsACommand(tmp_path / "ran")
    header = (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})
    digest = _legacy_file(tmp_path / "evil.pth", *header, {"weight": payload})
    with pytest.raises(effnet.WeightsError, match=r"evil\.pth: forbidden pickle global (posix|nt)\.system"):
        effnet.read_torch_legacy(tmp_path / "evil.pth", sha256=digest)
    assert not payload.marker.exists()


def test_a_bad_magic_number_or_a_truncated_storage_is_refused(tmp_path):
    wrong = tmp_path / "wrong.pth"
    with pytest.raises(effnet.WeightsError, match="magic number is 42, not torch's legacy format"):
        effnet.read_torch_legacy(wrong, sha256=_legacy_file(wrong, 42))

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(effnet.weights_path().read_bytes()[:-100])
    digest = hashlib.sha256(truncated.read_bytes()).hexdigest()
    with pytest.raises(effnet.WeightsError, match=r"truncated\.pth: storage \w+ is truncated"):
        effnet.read_torch_legacy(truncated, sha256=digest)
