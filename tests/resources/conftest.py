"""Fixtures of the storage suite: both stores over the session's real S3 server."""

import pytest

from resources.storage import ArtifactIOManager, LocalArtifactStore, S3ArtifactStore


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
