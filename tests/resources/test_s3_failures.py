"""S3 going wrong: the server stopping mid-upload, a writer dying mid-upload, wrong credentials.

Each failure must be retried where that can help, then end in one clear error that names
the bucket, the key and the endpoint, and must never leave an object that a later load
would take for complete.
"""

import logging
import subprocess
import sys
import threading
import time

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from tests.resources.s3_support import REGION, S3Server
from tests.resources.test_storage import assert_identical, load_value, store_value

from resources.image_source import ImageSourceError, RawImageSource
from resources.storage import ArtifactIOManager, S3ArtifactStore, StorageError

BIG = 160 * 2**20  # ten 16 MiB parts: long enough to interrupt


def wait_for_parts(client, bucket: str, timeout: float = 180) -> str:
    """Block until a multipart upload in `bucket` has at least one part; returns its key."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            if client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]).get("Parts"):
                return upload["Key"]
        time.sleep(0.05)
    raise TimeoutError(f"no multipart upload with parts appeared in {bucket}")


def exists(client, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as error:
        assert error.response["Error"]["Code"] == "404"
        return False


def test_server_stopped_mid_upload_is_retried_then_fails_clearly(tmp_path, caplog):
    server = S3Server(tmp_path)  # its own process: this test stops it
    try:
        bucket = server.new_bucket()
        io_manager = ArtifactIOManager(store=S3ArtifactStore(s3=server.resource(), bucket=bucket))
        array = np.random.default_rng(1).integers(0, 256, size=BIG, dtype=np.uint8)
        outcome = {}

        def upload():
            try:
                store_value(io_manager, "train_images", array)
            except Exception as error:  # noqa: BLE001 - the test inspects it
                outcome["error"] = error

        with caplog.at_level(logging.DEBUG, logger="botocore.retries.standard"):
            writer = threading.Thread(target=upload)
            writer.start()
            key = wait_for_parts(server.client(), bucket)
            assert key == "dagster/train_images.npy"
            assert not exists(server.client(), bucket, key), "an upload in flight must not be visible"
            server.stop()
            writer.join(timeout=300)
        assert not writer.is_alive()

        error = outcome.get("error")
        assert isinstance(error, StorageError), f"expected a StorageError, got {error!r}"
        message = str(error)
        assert f"s3://{bucket}/dagster/train_images.npy" in message
        assert server.endpoint in message
        assert "retried up to 5 times" in message  # S3Resource.max_attempts counts retries
        assert any("Retry needed" in record.getMessage() for record in caplog.records), "no request was retried"

        # Back on the same port (moto's state went with the process): the same IO manager
        # and its pooled client work again without a restart of the pipeline process.
        server.start()
        server.client().create_bucket(Bucket=bucket)
        store_value(io_manager, "train_labels", np.arange(5, dtype=np.int64))
        assert_identical(load_value(io_manager, "train_labels"), np.arange(5, dtype=np.int64))
    finally:
        server.stop()


WRITER = """
import sys
import numpy as np
from dagster_aws.s3 import S3Resource
from resources.storage import S3ArtifactStore, _NpyReader
endpoint, bucket, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
s3 = S3Resource(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
S3ArtifactStore(s3=s3, bucket=bucket).put("train_images.npy", _NpyReader(np.ones(size, dtype=np.uint8)))
"""


def test_writer_killed_mid_upload_leaves_the_previous_value(s3_server, bucket):
    io_manager = ArtifactIOManager(store=S3ArtifactStore(s3=s3_server.resource(), bucket=bucket))
    previous = np.arange(1000, dtype=np.uint8)
    store_value(io_manager, "train_images", previous)
    client = s3_server.client()

    writer = subprocess.Popen([sys.executable, "-c", WRITER, s3_server.endpoint, bucket, str(BIG)])
    try:
        wait_for_parts(client, bucket)
    finally:
        writer.kill()
        writer.wait()

    assert_identical(load_value(io_manager, "train_images"), previous)
    # The interrupted write is only an incomplete multipart upload, invisible to loads and
    # listings (a bucket lifecycle rule reclaims such uploads on AWS).
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [upload["Key"] for upload in uploads] == ["dagster/train_images.npy"]
    listed = client.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(item["Key"], item["Size"]) for item in listed] == [("dagster/train_images.npy", previous.nbytes + 128)]


@pytest.fixture
def iam_credentials(s3_server, bucket):
    """Keys of a real IAM user allowed on `bucket`, with moto's authentication switched on."""
    iam = boto3.client(
        "iam", endpoint_url=s3_server.endpoint, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    user = f"pipeline-{bucket}"
    iam.create_user(UserName=user)
    iam.put_user_policy(
        UserName=user,
        PolicyName="bucket",
        PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}',
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    s3_server.client().put_object(Bucket=bucket, Key="data/train/benign/1.jpg", Body=b"jpeg")
    s3_server.enforce_auth(True)
    yield key["AccessKeyId"], key["SecretAccessKey"]
    s3_server.enforce_auth(False)


def test_wrong_credentials_give_a_clear_error(s3_server, bucket, iam_credentials):
    key_id, secret = iam_credentials
    good = s3_server.resource(aws_access_key_id=key_id, aws_secret_access_key=secret)
    store_value(ArtifactIOManager(store=S3ArtifactStore(s3=good, bucket=bucket)), "champion_model", {"version": "1"})

    wrong_secret = "not-the-secret-0123456789"
    for wrong_key_id, code in [(key_id, "SignatureDoesNotMatch"), ("AKIAUNKNOWNKEY000000", "InvalidAccessKeyId")]:
        s3 = s3_server.resource(aws_access_key_id=wrong_key_id, aws_secret_access_key=wrong_secret)
        io_manager = ArtifactIOManager(store=S3ArtifactStore(s3=s3, bucket=bucket))
        with pytest.raises(StorageError, match=code) as failure:
            store_value(io_manager, "champion_model", {"version": "2"})
        with pytest.raises(StorageError, match="403") as failure_to_load:  # HEAD answers have no error body
            load_value(io_manager, "champion_model")
        for message in (str(failure.value), str(failure_to_load.value)):
            assert f"s3://{bucket}/dagster/champion_model." in message and s3_server.endpoint in message
            assert "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY" in message and wrong_secret not in message

        source = RawImageSource(location=f"s3://{bucket}/data", s3=s3)
        with pytest.raises(ImageSourceError, match=code) as failure:
            source.list_images()
        assert f"s3://{bucket}/data/train/benign" in str(failure.value)

    assert load_value(ArtifactIOManager(store=S3ArtifactStore(s3=good, bucket=bucket)), "champion_model") == {"version": "1"}
