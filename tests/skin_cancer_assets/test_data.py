"""The data group on copies of real images: manifest, rejects, arrays, data versions, bad folders."""

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from resources.image_source import RawImageSource
from skin_cancer_assets.assets.data import SOURCE_DIGEST_TAG
from skin_cancer_assets.preprocessing import listing_digest
from tests.conftest import DATASET, copy_subset
from tests.helpers import error_chain, free_port
from tests.skin_cancer_assets.pipeline import materialize_graph, validation_split_of

DATA = dg.AssetSelection.groups("data")
RAW_IMAGES = dg.AssetSelection.assets("raw_images")


def gates(**config) -> dict:
    return {"ops": {"raw_images": {"config": config}}}


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

    result = materialize_graph(tmp_path / "home", selection=DATA, run_config=gates(max_rejected_share=0.2))

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
    assert checks == {
        "no_train_test_leak": True, "enough_images_per_class": True, "few_rejected_files": True, "no_sudden_shrinkage": True,
        "arrays_shape": True, "class_counts": True, "no_near_duplicates_across_splits": True,
    }


def _gate(result, name: str):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def test_too_many_unreadable_files_fail_their_gate_and_nothing_is_preprocessed(data_copy, tmp_path):
    for number in range(2):  # 2 of 26 files: 7.7 %, above the default 5 %
        (data_copy / "train" / "benign" / f"empty-{number}.jpg").write_bytes(b"")
    result = materialize_graph(tmp_path / "home", selection=DATA, raise_on_error=False)
    assert not result.success
    gate = _gate(result, "few_rejected_files")
    assert not gate.passed and gate.metadata["rejected"].value == 2 and gate.metadata["listed"].value == 26
    assert not result.asset_materializations_for_node("preprocessed_arrays")


def test_too_few_images_in_a_split_and_class_fail_their_gate(data_copy, tmp_path):
    result = materialize_graph(tmp_path / "home", selection=DATA, raise_on_error=False, run_config=gates(min_images_per_class=7))
    gate = _gate(result, "enough_images_per_class")
    assert not result.success and not gate.passed
    assert gate.metadata["too_few"].value == {f"{s}/{c}": 6 for s in ("train", "test") for c in ("benign", "malignant")}
    assert not result.asset_materializations_for_node("preprocessed_arrays")


def test_data_that_lost_more_than_the_allowed_share_fails_its_gate(data_copy, tmp_path):
    instance = dg.DagsterInstance.local_temp(str(tmp_path))
    materialize_graph(tmp_path, selection=RAW_IMAGES, instance=instance)
    for folder in ("train/benign", "train/malignant", "test/benign"):  # 3 of 24 images: 12.5 %, above 10 %
        sorted((data_copy / folder).iterdir())[0].unlink()
    result = materialize_graph(tmp_path, selection=RAW_IMAGES, instance=instance, raise_on_error=False)
    gate = _gate(result, "no_sudden_shrinkage")
    assert not result.success and not gate.passed
    assert (gate.metadata["images"].value, gate.metadata["previous_images"].value) == (21, 24)
    allowed = materialize_graph(tmp_path, selection=RAW_IMAGES, instance=instance, run_config=gates(max_shrinkage=0.2))
    assert _gate(allowed, "no_sudden_shrinkage").passed


def test_a_retrain_reads_only_the_listing_the_sensor_saw(data_copy, tmp_path):
    seen = listing_digest(RawImageSource(location=str(data_copy)).list_stamped_images())  # what the sensor lists
    assert materialize_graph(tmp_path / "home", selection=RAW_IMAGES, tags={SOURCE_DIGEST_TAG: seen}).success
    (data_copy / "train" / "benign" / "late-arrival.jpg").write_bytes(next((data_copy / "test" / "benign").iterdir()).read_bytes())
    with pytest.raises(Exception) as failure:
        materialize_graph(tmp_path / "home", selection=RAW_IMAGES, tags={SOURCE_DIGEST_TAG: seen})
    assert f"changed after the retrain sensor saw it settle" in error_chain(failure.value)
    assert f"launched for {seen[:12]}" in error_chain(failure.value)


def test_new_images_leave_every_old_validation_image_where_it_was(tmp_path, pipeline_env, monkeypatch):
    data = copy_subset(tmp_path / "data", per_class=16)
    monkeypatch.setenv("SKIN_CANCER_DATA", str(data))
    before = validation_split_of(materialize_graph(tmp_path / "before", selection=DATA))
    for label in ("benign", "malignant"):  # 8 more real training images of each class
        for path in sorted((DATASET / "train" / label).iterdir())[16:24]:
            (data / "train" / label / path.name).write_bytes(path.read_bytes())
    after = validation_split_of(materialize_graph(tmp_path / "after", selection=DATA))
    assert set(before["image_ids"]) <= set(after["image_ids"])  # none moved into training
    assert len(after["image_ids"]) > len(before["image_ids"]) and after["digest"] != before["digest"]


def test_a_re_encoded_copy_across_splits_is_a_near_duplicate_warning(data_copy, tmp_path):
    original = sorted((data_copy / "train" / "malignant").iterdir())[0]
    with Image.open(original) as image:  # other bytes (so the exact leak check passes), the same lesion
        image.resize((200, 200)).save(data_copy / "test" / "malignant" / "re-encoded.jpg", quality=60)
    result = materialize_graph(tmp_path / "home", selection=DATA)
    assert result.success  # a warning, not a stop
    check = _gate(result, "no_near_duplicates_across_splits")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    found = {k: v.value for k, v in check.metadata.items() if k.startswith("pairs_")}
    assert sum(found.values()) == 1 and found["pairs_fitted_test"] + found["pairs_validation_test"] == 1
    ((train_path, test_path, distance),) = [pair for pairs in check.metadata["examples"].value.values() for pair in pairs]
    assert (train_path, test_path) == (f"train/malignant/{original.name}", "test/malignant/re-encoded.jpg") and distance <= 20
    assert _gate(result, "no_train_test_leak").passed


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
