"""Reading the images of a multipart upload, with errors that name the file at fault."""

import re
from collections.abc import AsyncIterator

import numpy as np
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from skin_cancer_contract.api import UPLOAD_FIELD as FIELD
from skin_cancer_contract.imaging import ImageDecodeError, decode_image

MAX_FILES = 64
ACCEPTED_PART_TYPES = ("image/", "application/octet-stream")
_FILENAME = re.compile(rb'filename="([^"]*)"')


class UploadError(Exception):
    """A client error: `status_code` and a message for the JSON `detail`."""

    def __init__(self, status_code: int, detail: str):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class _TooLarge(Exception):
    def __init__(self, filename: str | None):
        self.filename = filename


async def read_uploads(request: Request, max_bytes: int) -> list[tuple[str, bytes]]:
    """(filename, bytes) of every upload in field `file`, in the order sent."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise UploadError(
            415,
            f"expected a multipart/form-data body with the image(s) in field '{FIELD}', "
            f"got content type '{content_type or 'none'}'",
        )
    parser = MultiPartParser(request.headers, _limited(request.stream(), max_bytes), max_files=MAX_FILES)
    try:
        form = await parser.parse()
    except _TooLarge as error:
        raise UploadError(413, _too_large(error.filename, max_bytes)) from None
    except MultiPartException as error:
        raise UploadError(400, f"malformed multipart body: {error.message}") from None
    try:
        parts = form.getlist(FIELD)
        if not parts:
            raise UploadError(
                422, f"missing multipart field '{FIELD}': send each image as a file in field '{FIELD}' (got fields {sorted(set(form.keys()))})"
            )
        uploads = []
        for index, part in enumerate(parts):
            if not isinstance(part, UploadFile):
                raise UploadError(422, f"field '{FIELD}' #{index + 1} is text, not a file upload")
            name = part.filename or f"upload #{index + 1}"
            part_type = part.content_type or ""
            if part_type and not part_type.startswith(ACCEPTED_PART_TYPES):
                raise UploadError(415, f"file '{name}': content type '{part_type}' is not an image (send JPEG or PNG)")
            uploads.append((name, await part.read()))
        return uploads
    finally:
        await form.close()


def decode_uploads(uploads: list[tuple[str, bytes]], size: int) -> np.ndarray:
    """The uploads as one (N, size, size, 3) uint8 batch; blocking (PIL decodes)."""
    images = []
    for name, data in uploads:
        try:
            images.append(decode_image(data, size))
        except ImageDecodeError as error:
            raise UploadError(400, f"file '{name}': {error}") from None
    return np.stack(images)


async def _limited(stream: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    """Pass the body through, stopping once it grows past `max_bytes`, with the file being sent then."""
    total, filename, tail = 0, None, b""
    async for chunk in stream:
        total += len(chunk)
        names = _FILENAME.findall(tail + chunk)
        if names:
            filename = names[-1].decode("utf-8", "replace")
        if total > max_bytes:
            raise _TooLarge(filename)
        tail = chunk[-512:]
        yield chunk


def _too_large(filename: str | None, max_bytes: int) -> str:
    what = f"file '{filename}'" if filename else "upload"
    return f"{what} is too large: the request is over MAX_UPLOAD_MB={max_bytes / 1024 / 1024:g} MB"
