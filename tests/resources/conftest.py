"""Fixtures of the storage suite: a real S3 server on loopback, buckets, and both stores."""

import pytest
from tests.resources.s3_support import S3Server

from resources.storage import ArtifactIOManager, LocalArtifactStore, S3ArtifactStore


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    """`moto_server` as a separate process, shared by the suite (tests use their own buckets)."""
    server = S3Server(tmp_path_factory.mktemp("s3-server"))
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server) -> str:
    return s3_server.new_bucket()


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """The same IO manager code over each backend."""
    if request.param == "local":
        return LocalArtifactStore(base_dir=str(tmp_path / "storage"))
    server = request.getfixturevalue("s3_server")
    return S3ArtifactStore(s3=server.resource(), bucket=server.new_bucket())


@pytest.fixture
def io_manager(store) -> ArtifactIOManager:
    return ArtifactIOManager(store=store)
