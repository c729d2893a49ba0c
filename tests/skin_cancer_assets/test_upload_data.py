"""`python -m skin_cancer_assets.upload_data`: the local image set into a bucket, in the seed's layout."""

import os
import subprocess
import sys
import uuid

import pytest
from tests.conftest import copy_subset
from tests.resources.s3_support import ACCESS_KEY, REGION, SECRET_KEY

from resources.image_source import RawImageSource
from skin_cancer_assets.upload_data import UploadError, upload


def test_command_creates_the_bucket_and_image_source_reads_it_back(s3_server, tmp_path):
    source = copy_subset(tmp_path / "data", per_class=3)
    bucket = f"upload-{uuid.uuid4().hex[:12]}"  # not there yet: the command creates it
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": s3_server.endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "SKIN_CANCER_DATA": str(source),
    }
    done = subprocess.run(
        [sys.executable, "-m", "skin_cancer_assets.upload_data", f"s3://{bucket}/data"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert f"created bucket {bucket}" in done.stdout and "done: 12 uploaded, 0 unchanged" in done.stdout

    keys = [item["Key"] for item in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 12 and all(key.split("/")[:2] in (["data", "train"], ["data", "test"]) for key in keys)
    local = RawImageSource(location=str(source))
    remote = RawImageSource(location=f"s3://{bucket}/data", s3=s3_server.resource())
    assert remote.list_images() == local.list_images()
    for _, _, path in local.list_images():
        assert remote.read(path) == local.read(path)


def test_upload_sends_only_what_changed(s3_server, bucket, tmp_path):
    source = copy_subset(tmp_path / "data", per_class=2)
    client = s3_server.client()
    destination = f"s3://{bucket}/data/"

    total = sum(path.stat().st_size for path in source.rglob("*.jpg"))
    assert upload(destination, source, client) == {"uploaded": 8, "skipped": 0, "bytes": total}
    assert upload(destination, source, client)["uploaded"] == 0

    changed = sorted((source / "test" / "malignant").iterdir())[0]
    changed.write_bytes(changed.read_bytes() + b"\0")
    assert upload(destination, source, client) == {"uploaded": 1, "skipped": 7, "bytes": changed.stat().st_size}
    head = client.head_object(Bucket=bucket, Key=f"data/test/malignant/{changed.name}")
    assert head["ContentLength"] == changed.stat().st_size


def test_image_source_lists_only_each_folders_own_images(s3_server, bucket, tmp_path):
    upload(f"s3://{bucket}/data", copy_subset(tmp_path / "data", per_class=1), s3_server.client())
    for stray in ("data/train/benign/nested/extra.jpg", "data/train/benign/.DS_Store"):
        s3_server.client().put_object(Bucket=bucket, Key=stray, Body=b"x")

    listed = RawImageSource(location=f"s3://{bucket}/data", s3=s3_server.resource()).list_images()
    assert [split_class for *split_class, _ in listed] == [
        ["test", "benign"], ["test", "malignant"], ["train", "benign"], ["train", "malignant"]
    ]


def test_bad_destination_or_source_is_named(s3_server, tmp_path):
    client = s3_server.client()
    with pytest.raises(UploadError, match="'/tmp/data' is not an s3://BUCKET"):
        upload("/tmp/data", tmp_path, client)
    with pytest.raises(UploadError, match=f"{tmp_path / 'missing'} does not exist"):
        upload("s3://bucket/data", tmp_path / "missing", client)
    (tmp_path / "train" / "benign").mkdir(parents=True)
    with pytest.raises(UploadError, match=f"{tmp_path / 'train' / 'malignant'} is missing"):
        upload("s3://bucket/data", tmp_path, client)
