"""Where assets live: one IO manager, open formats, two backends (local disk and S3).

Arrays are `.npy` (loaded without pickle), Keras models `.keras`, everything else JSON.
Large arrays stream from and into a single buffer, so storing or loading one never holds
a second whole copy in memory. A write becomes visible only when complete: a temporary
file renamed into place on disk, a (multipart) upload completed on S3.
"""

import functools
import io
import json
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, BinaryIO

import dagster as dg
import numpy as np
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from dagster_aws.s3 import S3Resource

FORMATS = (".npy", ".keras", ".json")
MiB = 2**20


# Uploads go in parallel 16 MiB parts, so a failed part is retried alone; at most 4 parts are
# ever copied out of the array (s3transfer reads up to 10 ahead by default).
UPLOAD = TransferConfig(multipart_threshold=16 * MiB, multipart_chunksize=16 * MiB, max_concurrency=4)
UPLOAD.max_in_memory_upload_chunks = 4

S3_ERRORS = (BotoCoreError, ClientError)
BROKEN_STREAM = (ResponseStreamingError, ReadTimeoutError, ConnectionClosedError, IncompleteReadError)
AUTH_ERRORS = ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken")


NOT_FOUND = ("404", "NoSuchKey", "NoSuchBucket", "NotFound")


def is_not_found(error: Exception) -> bool:
    """Whether an S3 error means the object or bucket does not exist (not a failure to reach it)."""
    return getattr(error, "response", {}).get("Error", {}).get("Code") in NOT_FOUND


class StorageError(RuntimeError):
    """A read or write failed; the message names the object and the backend."""


@functools.lru_cache(maxsize=16)
def s3_client(s3: S3Resource):
    """One thread-safe client per S3 configuration: `get_client()` builds a new session (~0.3 s)."""
    return s3.get_client()


class ArtifactStore(dg.ConfigurableResource, ABC):
    """Object storage for asset values, keyed by slash-separated paths."""

    @abstractmethod
    def put(self, key: str, stream: BinaryIO) -> None: ...

    @abstractmethod
    def size(self, key: str) -> int | None:
        """Bytes of the object, None when it does not exist."""

    @abstractmethod
    def read_into(self, key: str, sink: BinaryIO) -> None: ...

    @abstractmethod
    def uri(self, key: str) -> str: ...

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """Every key under `prefix` (ending in a slash), sorted: for stores written by others, like the prediction log."""


class LocalArtifactStore(ArtifactStore):
    base_dir: str

    def _path(self, key: str) -> Path:
        return Path(self.base_dir) / key

    def put(self, key: str, stream: BinaryIO) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(16 * MiB):
                    out.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def size(self, key: str) -> int | None:
        path = self._path(key)
        return path.stat().st_size if path.is_file() else None

    def read_into(self, key: str, sink: BinaryIO) -> None:
        with open(self._path(key), "rb") as source:
            while chunk := source.read(16 * MiB):
                sink.write(chunk)

    def uri(self, key: str) -> str:
        return str(self._path(key).resolve())

    def list_keys(self, prefix: str) -> list[str]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        base = Path(self.base_dir)
        return sorted(p.relative_to(base).as_posix() for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


class S3ArtifactStore(ArtifactStore):
    s3: S3Resource
    bucket: str
    prefix: str = "dagster"

    def _key(self, key: str) -> str:
        return f"{self.prefix.strip('/')}/{key}" if self.prefix else key

    def _fail(self, action: str, key: str, error: Exception) -> StorageError:
        endpoint = self.s3.endpoint_url or "AWS S3"
        code = getattr(error, "response", {}).get("Error", {}).get("Code")
        hint = " (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket policy)" if code in AUTH_ERRORS else ""
        return StorageError(
            f"S3 {action} of s3://{self.bucket}/{self._key(key)} at {endpoint} failed "
            f"(each request retried up to {self.s3.max_attempts} times): {error}{hint}"
        )

    def put(self, key: str, stream: BinaryIO) -> None:
        try:
            s3_client(self.s3).upload_fileobj(stream, self.bucket, self._key(key), Config=UPLOAD)
        except S3_ERRORS as error:
            raise self._fail("upload", key, error) from error

    def size(self, key: str) -> int | None:
        try:
            return s3_client(self.s3).head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]
        except ClientError as error:
            if is_not_found(error):
                return None
            raise self._fail("lookup", key, error) from error
        except BotoCoreError as error:
            raise self._fail("lookup", key, error) from error

    def read_into(self, key: str, sink: BinaryIO) -> None:
        """One GET streamed into `sink` in 1 MiB reads; a broken stream resumes where it stopped.

        In bench/io_manager.py a single stream kept up with get_object().read() and was faster
        than s3transfer's download (an extra I/O thread and copy per chunk); parallel ranged GETs
        were 5x slower on moto, which reads the whole object again for every range. Resumed
        reads ask for the same ETag, so two versions of an object are never spliced together.
        """
        where, written, etag, broken = {"Bucket": self.bucket, "Key": self._key(key)}, 0, None, None
        for _ in range(self.s3.max_attempts + 1):
            try:
                resume = {"Range": f"bytes={written}-", "IfMatch": etag} if written else {}
                response = s3_client(self.s3).get_object(**where, **resume)
                etag = etag or response["ETag"]
                while chunk := response["Body"].read(MiB):
                    sink.write(chunk)
                    written += len(chunk)
                return
            except BROKEN_STREAM as error:
                broken = error
            except S3_ERRORS as error:
                raise self._fail("download", key, error) from error
        raise self._fail("download", key, broken) from broken

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def list_keys(self, prefix: str) -> list[str]:
        start = len(self._key(""))
        try:
            pages = s3_client(self.s3).get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
            return sorted(item["Key"][start:] for page in pages for item in page.get("Contents", []))
        except S3_ERRORS as error:
            raise self._fail("listing", prefix, error) from error


class ArtifactIOManager(dg.ConfigurableIOManager):
    """Stores each asset as `<asset/key/path>.<format>` in the configured store."""

    store: dg.ResourceDependency[ArtifactStore]

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        key = "/".join(context.asset_key.path) + _extension(obj)
        if isinstance(obj, np.ndarray):
            self.store.put(key, _NpyReader(obj))
        elif _is_keras_model(obj):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.keras"
                obj.save(path)
                with open(path, "rb") as stream:
                    self.store.put(key, stream)
        else:
            self.store.put(key, io.BytesIO(json.dumps(obj, indent=1, default=str).encode()))
        context.add_output_metadata({"storage_uri": self.store.uri(key)})

    def load_input(self, context: dg.InputContext) -> Any:
        base = "/".join(context.asset_key.path)
        for extension in FORMATS:
            size = self.store.size(base + extension)
            if size is not None:
                return _LOADERS[extension](self.store, base + extension, size)
        raise StorageError(f"asset {context.asset_key.to_user_string()} has no stored value at {self.store.uri(base)}.*")


def _is_keras_model(obj: Any) -> bool:
    return type(obj).__module__.startswith("keras") and hasattr(obj, "save")


def _extension(obj: Any) -> str:
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError("object arrays cannot be stored as .npy without pickle")
        return ".npy"
    return ".keras" if _is_keras_model(obj) else ".json"


def _load_npy(store: ArtifactStore, key: str, size: int) -> np.ndarray:
    buffer = np.empty(size, dtype=np.uint8)
    writer = _BufferWriter(memoryview(buffer), store.uri(key))
    store.read_into(key, writer)
    if writer.tell() != size:
        raise StorageError(f"{store.uri(key)} changed while being read: {writer.tell()} of {size} bytes")
    header = io.BytesIO(buffer[: min(size, 65536)].tobytes())
    version = np.lib.format.read_magic(header)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    shape, fortran_order, dtype = read_header[version](header)
    if dtype.hasobject:
        raise StorageError(f"{store.uri(key)} holds Python objects; refusing to unpickle")
    count = int(np.prod(shape))
    array = np.frombuffer(buffer, dtype=dtype, count=count, offset=header.tell())
    return array.reshape(shape, order="F" if fortran_order else "C")


def _load_keras(store: ArtifactStore, key: str, size: int):
    import keras

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        with open(path, "wb") as sink:
            store.read_into(key, sink)
        return keras.models.load_model(path)


def _load_json(store: ArtifactStore, key: str, size: int) -> Any:
    sink = io.BytesIO()
    store.read_into(key, sink)
    return json.loads(sink.getvalue())


_LOADERS = {".npy": _load_npy, ".keras": _load_keras, ".json": _load_json}


class _NpyReader(io.BufferedIOBase):
    """Reads an array as `.npy` bytes straight from its memory: header, then data.

    Seekable and always returning full reads, so a transfer learns the size up front and
    splits the upload into parts without buffering the whole stream.
    """

    def __init__(self, array: np.ndarray):
        array = array if array.flags.c_contiguous else array.copy(order="C")  # ascontiguousarray makes 0-d 1-d
        header = io.BytesIO()
        np.lib.format.write_array_header_2_0(header, np.lib.format.header_data_from_array_1_0(array))
        self._header = memoryview(header.getvalue())
        self._data = memoryview(array.reshape(-1).view(np.uint8))
        self._size = len(self._header) + len(self._data)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._position + size)
        start, self._position = self._position, max(self._position, end)
        head = len(self._header)
        pieces = (self._header[min(start, head) : min(end, head)], self._data[max(start - head, 0) : max(end - head, 0)])
        return b"".join(pieces)  # the one copy of a part that a transfer needs

    read1 = read


class _BufferWriter(io.RawIOBase):
    """A sink that fills a preallocated buffer in order, so a download lands in place."""

    def __init__(self, buffer: memoryview, name: str):
        self._buffer = buffer
        self._name = name
        self._position = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def write(self, data) -> int:
        n = len(data)
        end = self._position + n
        if end > len(self._buffer):
            raise StorageError(f"{self._name} changed while being read: more than {len(self._buffer)} bytes")
        self._buffer[self._position : end] = data
        self._position = end
        return n
