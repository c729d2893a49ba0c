"""The data group on copies of real images: manifest, rejects, arrays, data versions, bad folders."""

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from tests.conftest import copy_subset
from tests.helpers import error_chain, free_port
from tests.skin_cancer_assets.pipeline import materialize_graph

DATA = dg.AssetSelection.groups("data")


@pytest.fixture
def data_copy(tmp_path, pipeline_env, monkeypatch, dataset):
    folder = copy_subset(tmp_path / "data", per_class=6)
    monkeypatch.setenv("SKIN_CANCER_DATA", str(folder))
    return folder


def _data_version(instance, name: str) -> str:
    event = instance.get_latest_materialization_event(dg.AssetKey(name))
    return event.asset_materialization.tags["dagster/data_version"]


def test_corrupt_and_non_image_files_are_rejected_and_the_run_succeeds(data_copy, tmp_path):
    real = next((data_copy / "train" / "benign").iterdir()).read_bytes()
    (data_copy / "train" / "benign" / "truncated.jpg").write_bytes(real[: len(real) // 3])
    (data_copy / "test" / "malignant" / "notes.txt").write_text("not an image")
    with Image.open(next((data_copy / "test" / "malignant").glob("*.jpg"))) as image:
        image.save(data_copy / "test" / "malignant" / "scan.bmp")  # a real image, in a format never opened

    result = materialize_graph(tmp_path / "home", selection=DATA)

    assert result.success
    manifest = result.output_for_node("raw_images")
    rejected = {entry["path"]: entry["reason"] for entry in manifest["rejected"]}
    assert set(rejected) == {"train/benign/truncated.jpg", "test/malignant/notes.txt", "test/malignant/scan.bmp"}
    assert "truncated" in rejected["train/benign/truncated.jpg"]
    assert "not a JPEG or PNG" in rejected["test/malignant/scan.bmp"]
    assert len(manifest["images"]) == 24
    metadata = result.asset_materializations_for_node("raw_images")[0].metadata
    assert metadata["rejected"].value == 3

    arrays = result.output_for_node("preprocessed_arrays", "train_images")
    labels = result.output_for_node("preprocessed_arrays", "train_labels")
    assert arrays.dtype == np.uint8 and arrays.shape == (12, 64, 64, 3)
    assert sorted(np.bincount(labels)) == [6, 6]  # both classes: the seed labelled every image 0
    statistics = result.output_for_node("preprocessed_arrays", "train_image_statistics")
    sample = arrays[:, ::4, ::4].reshape(12, -1, 3)  # the pixels serving's statistics read
    assert statistics == pytest.approx(np.concatenate([sample.mean(axis=1), sample.std(axis=1)], axis=1), abs=1e-3)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"no_train_test_leak": True, "arrays_shape": True, "class_counts": True}


def test_unchanged_data_keeps_its_data_version_and_a_change_moves_it(data_copy, tmp_path):
    instance = dg.DagsterInstance.local_temp(str(tmp_path))
    select = dg.AssetSelection.assets("raw_images")
    materialize_graph(tmp_path, selection=select, instance=instance)
    first = _data_version(instance, "raw_images")
    materialize_graph(tmp_path, selection=select, instance=instance)
    assert _data_version(instance, "raw_images") == first

    next((data_copy / "test" / "benign").iterdir()).unlink()
    materialize_graph(tmp_path, selection=select, instance=instance)
    assert _data_version(instance, "raw_images") != first


def test_a_missing_data_folder_fails_naming_the_path(tmp_path, pipeline_env, monkeypatch):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("SKIN_CANCER_DATA", str(missing))
    with pytest.raises(Exception, match=str(missing)):
        materialize_graph(tmp_path / "home", selection=dg.AssetSelection.assets("raw_images"))


def test_an_empty_class_folder_fails_naming_the_folder(data_copy, tmp_path):
    for path in (data_copy / "test" / "malignant").iterdir():
        path.unlink()
    with pytest.raises(Exception, match="test/malignant"):
        materialize_graph(tmp_path / "home", selection=dg.AssetSelection.assets("raw_images"))


def test_an_unreachable_mlflow_server_fails_naming_the_url(data_copy, tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    with pytest.raises(Exception) as failure:
        materialize_graph(tmp_path / "home", selection=DATA)
    assert f"MLflow tracking server {url} (MLFLOW_TRACKING_URI) is unreachable" in error_chain(failure.value)


def test_a_test_image_copied_into_train_fails_the_leak_check_and_blocks_the_arrays(data_copy, tmp_path):
    leaked = next((data_copy / "test" / "malignant").iterdir())
    (data_copy / "train" / "malignant" / "leaked.jpg").write_bytes(leaked.read_bytes())

    result = materialize_graph(tmp_path / "home", selection=DATA, raise_on_error=False)

    assert not result.success
    leak = next(e for e in result.get_asset_check_evaluations() if e.check_name == "no_train_test_leak")
    assert not leak.passed
    assert leak.metadata["images_in_both"].value == 1
    assert leak.metadata["examples"].value == [["train/malignant/leaked.jpg", f"test/malignant/{leaked.name}"]]
    assert not result.asset_materializations_for_node("preprocessed_arrays")  # blocked: no arrays from leaked data
