"""The whole smoke graph on S3: raw images read from s3://, every asset stored in the bucket.

It elects into an MLflow store of its own, so the champion alias of the session's server is
never touched here."""

import hashlib

import mlflow
import numpy as np
import pytest
from tests.conftest import copy_subset
from tests.resources.s3_support import ACCESS_KEY, REGION, SECRET_KEY
from tests.resources.test_storage import assert_identical, load_value
from tests.skin_cancer_assets.pipeline import materialize_graph

from resources.storage import ArtifactIOManager, S3ArtifactStore
from skin_cancer_assets.model_zoo import ZOO
from skin_cancer_assets.upload_data import upload

PER_CLASS = 12
STORED = {
    "raw_images.json",
    "train_images.npy",
    "train_labels.npy",
    "train_image_ids.json",
    "test_images.npy",
    "test_labels.npy",
    "test_image_ids.json",
    "train_image_statistics.npy",
    *(f"{spec.name}.keras" for spec in ZOO),
    *(f"{spec.name}_candidate.json" for spec in ZOO),
    "champion_model.json",
}


@pytest.mark.slow
def test_smoke_graph_runs_on_s3(pipeline_env, s3_server, bucket, tmp_path, monkeypatch):
    source = copy_subset(tmp_path / "subset", per_class=PER_CLASS)
    upload(f"s3://{bucket}/data", source, s3_server.client())
    for name, value in {
        "AWS_BUCKET": bucket,
        "AWS_ENDPOINT_URL": s3_server.endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "SKIN_CANCER_DATA": f"s3://{bucket}/data",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the embedded store in its state folder: a registry of its own

    try:
        result = materialize_graph(tmp_path / "dagster")
    finally:
        mlflow.end_run()
        mlflow.set_tracking_uri(pipeline_env["MLFLOW_TRACKING_URI"])
    assert result.success
    champion = result.output_for_node("champion_model")
    assert champion["decision"] == "promoted" and champion["incumbent"] is None  # its registry starts empty

    # The images came from the bucket: the uploaded subset, byte for byte.
    manifest = result.output_for_node("raw_images")
    assert manifest["location"] == f"s3://{bucket}/data" and not manifest["rejected"]
    assert len(manifest["images"]) == 4 * PER_CLASS
    for entry in manifest["images"]:
        assert entry["sha256"] == hashlib.sha256((source / entry["path"]).read_bytes()).hexdigest()

    # Every asset is an object in the bucket, in its open format, and says so in its metadata.
    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="dagster/")["Contents"]
    assert {item["Key"].removeprefix("dagster/") for item in listed} >= STORED
    assert not (tmp_path / "state" / "storage").exists(), "nothing may go to the local store"
    uris = {
        event.asset_key.to_user_string(): event.materialization.metadata["storage_uri"].text
        for event in result.get_asset_materialization_events()
    }
    assert uris["train_images"] == f"s3://{bucket}/dagster/train_images.npy"
    assert uris["basic_cnn"] == f"s3://{bucket}/dagster/basic_cnn.keras"

    # Loading back through a fresh IO manager gives exactly what the run produced.
    io_manager = ArtifactIOManager(store=S3ArtifactStore(s3=s3_server.resource(), bucket=bucket))
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        assert_identical(load_value(io_manager, name), result.output_for_node("preprocessed_arrays", name))
    train_images = load_value(io_manager, "train_images")
    assert train_images.dtype == np.uint8 and train_images.shape[0] == 2 * PER_CLASS
    assert load_value(io_manager, "champion_model") == result.output_for_node("champion_model")
    test_images = load_value(io_manager, "test_images")[:4]
    model = load_value(io_manager, "basic_cnn")
    np.testing.assert_allclose(
        model.predict(test_images, verbose=0), result.output_for_node("basic_cnn", "basic_cnn").predict(test_images, verbose=0), rtol=1e-6
    )
