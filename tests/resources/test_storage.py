"""The IO manager on both backends: open formats, byte-identical round trips, never a pickle."""

import io
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from tests.conftest import DATASET

from resources.storage import ArtifactIOManager, LocalArtifactStore, StorageError
from skin_cancer_contract.imaging import decode_image


def store_value(io_manager: ArtifactIOManager, name: str, value) -> dict:
    """handle_output as a run calls it; returns the metadata it logged."""
    with dg.build_output_context(asset_key=dg.AssetKey(name)) as context:
        io_manager.handle_output(context, value)
        return context.get_logged_metadata()


def load_value(io_manager: ArtifactIOManager, name: str):
    key = dg.AssetKey(name)
    with dg.build_output_context(asset_key=key) as upstream:
        with dg.build_input_context(asset_key=key, upstream_output=upstream) as context:
            return io_manager.load_input(context)


def stored_bytes(store, key: str) -> bytes:
    sink = io.BytesIO()
    store.read_into(key, sink)
    return sink.getvalue()


def real_images(count: int, size: int = 64) -> np.ndarray:
    paths = sorted((DATASET / "train" / "malignant").iterdir())[:count]
    return np.stack([decode_image(path.read_bytes(), size) for path in paths])


def assert_identical(loaded: np.ndarray, original: np.ndarray) -> None:
    assert loaded.dtype == original.dtype and loaded.shape == original.shape
    assert loaded.tobytes() == original.tobytes()


ARRAYS = {
    "images_uint8": lambda: real_images(6),
    "labels_int64": lambda: np.array([0, 1, 1, 0, 1, 0], dtype=np.int64),
    "scalar_float": lambda: np.array(0.25),
    "fortran_order": lambda: np.asfortranarray(np.arange(24, dtype=np.int64).reshape(4, 6)),
    "strided_view": lambda: np.arange(100, dtype=np.uint8)[::3],
    "empty": lambda: np.zeros((0, 64, 64, 3), dtype=np.uint8),
    # 40 MiB crosses the 16 MiB multipart threshold: three parts, the last one short.
    "multipart_uint8": lambda: np.random.default_rng(7).integers(0, 256, size=40 * 2**20 + 123, dtype=np.uint8),
}


@pytest.mark.parametrize("name", ARRAYS)
def test_array_round_trip_is_byte_identical(io_manager, store, name):
    original = ARRAYS[name]()
    metadata = store_value(io_manager, name, original)

    assert_identical(load_value(io_manager, name), original)
    assert metadata["storage_uri"].text == store.uri(f"{name}.npy")
    # The object is a plain .npy file that any tool reads without pickle.
    assert_identical(np.load(io.BytesIO(stored_bytes(store, f"{name}.npy")), allow_pickle=False), original)


def test_json_round_trip(io_manager, store):
    manifest = {"location": "s3://bucket/data", "images": [{"path": "train/benign/1.jpg", "bytes": 123}], "ratio": 0.5}
    store_value(io_manager, "raw_images", manifest)

    assert load_value(io_manager, "raw_images") == manifest
    assert json.loads(stored_bytes(store, "raw_images.json")) == manifest


def test_keras_model_round_trip(io_manager, store):
    import keras

    inputs = keras.Input(shape=(16, 16, 3), dtype="uint8")
    hidden = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden), name="tiny_cnn")
    images = real_images(4, size=16)
    store_value(io_manager, "basic_cnn", model)

    loaded = load_value(io_manager, "basic_cnn")
    assert loaded.name == "tiny_cnn"
    for mine, theirs in zip(model.get_weights(), loaded.get_weights(), strict=True):
        assert_identical(theirs, mine)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))
    assert stored_bytes(store, "basic_cnn.keras")[:2] == b"PK"  # the .keras zip format


def test_object_array_is_refused_and_nothing_is_stored(io_manager, store):
    with pytest.raises(TypeError, match="object arrays"):
        store_value(io_manager, "mixed", np.array([1, "two", None], dtype=object))
    assert store.size("mixed.npy") is None


class _Tripwire:
    """Unpickling this touches a file: proof that a load ran pickle."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


def test_pickled_npy_is_never_unpickled(io_manager, store, tmp_path):
    tripwire = tmp_path / "unpickled"
    payload = io.BytesIO()
    np.save(payload, np.array([_Tripwire(tripwire)], dtype=object), allow_pickle=True)
    payload.seek(0)
    store.put("planted.npy", payload)

    with pytest.raises(StorageError, match="refusing to unpickle") as failure:
        load_value(io_manager, "planted")
    assert store.uri("planted.npy") in str(failure.value)
    assert not tripwire.exists()


def test_missing_asset_names_where_it_looked(io_manager, store):
    with pytest.raises(StorageError, match="has no stored value") as failure:
        load_value(io_manager, "never_materialized")
    assert store.uri("never_materialized") in str(failure.value)


class _FailingStream(io.RawIOBase):
    """Gives `good` bytes, then fails like a dropped connection."""

    def __init__(self, good: int):
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        if self.left == 0:
            raise ConnectionResetError("source went away")
        n = min(len(target), self.left)
        target[:n] = b"x" * n
        self.left -= n
        return n


def test_failed_local_write_keeps_the_previous_value_and_no_partial_file(tmp_path):
    store = LocalArtifactStore(base_dir=str(tmp_path))
    io_manager = ArtifactIOManager(store=store)
    previous = np.arange(10, dtype=np.int64)
    store_value(io_manager, "train_labels", previous)

    with pytest.raises(ConnectionResetError):
        store.put("train_labels.npy", _FailingStream(good=40 * 2**20))

    assert_identical(load_value(io_manager, "train_labels"), previous)
    assert [p.name for p in tmp_path.iterdir()] == ["train_labels.npy"]
