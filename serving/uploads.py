"""Reading uploaded images and turning them into a batch, with errors that name the file at fault.

Every image's header is checked (format, width x height, the request's pixel budget) before
any image of the request is decoded, so bombs, other formats and oversize images are refused
at the cost of reading a header.
"""

import numpy as np
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from serving.errors import ApiError
from serving.settings import Settings
from skin_cancer_contract.api import UPLOAD_FIELD as FIELD
from skin_cancer_contract.imaging import (
    ImageDecodeError,
    ImageTooLarge,
    UnsupportedImageFormat,
    decode_image,
    image_size,
)

ACCEPTED_PART_TYPES = ("image/", "application/octet-stream")


async def read_uploads(request: Request, settings: Settings) -> list[tuple[str, bytes]]:
    """(filename, bytes) of every upload in field `file`, in the order sent."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise ApiError(
            415,
            f"expected a multipart/form-data body with the image(s) in field '{FIELD}', "
            f"got content type '{content_type or 'none'}'",
        )
    parser = MultiPartParser(request.headers, request.stream(), max_files=settings.max_files)
    try:
        form = await parser.parse()  # serving.front_door limits the body's size and pace
    except MultiPartException as error:
        if error.message.startswith("Too many files"):
            raise ApiError(413, f"too many files: at most MAX_FILES={settings.max_files} images per request") from None
        raise ApiError(400, f"malformed multipart body: {error.message}") from None
    try:
        parts = form.getlist(FIELD)
        if not parts:
            raise ApiError(
                422, f"missing multipart field '{FIELD}': send each image as a file in field '{FIELD}' (got fields {sorted(set(form.keys()))})"
            )
        uploads = []
        for index, part in enumerate(parts):
            if not isinstance(part, UploadFile):
                raise ApiError(422, f"field '{FIELD}' #{index + 1} is text, not a file upload")
            name = part.filename or f"upload #{index + 1}"
            part_type = part.content_type or ""
            if part_type and not part_type.startswith(ACCEPTED_PART_TYPES):
                raise ApiError(415, f"file '{name}': content type '{part_type}' is not an image (send JPEG or PNG)")
            uploads.append((name, await part.read()))
        return uploads
    finally:
        await form.close()


def decode_uploads(uploads: list[tuple[str, bytes]], size: int, settings: Settings) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The images as one (N, size, size, 3) uint8 batch, and each one's (width, height) as its
    header gives it; blocking (PIL decodes).

    All headers are checked first: one refused image refuses the request before any decode.
    """
    total, sizes = 0, []
    for name, data in uploads:
        width, height = _checked(name, lambda: image_size(data, settings.max_image_pixels))
        sizes.append((width, height))
        total += width * height
        if total > settings.max_request_pixels:
            raise ApiError(
                413,
                f"file '{name}': the request's images reach {total:,} pixels together, over "
                f"MAX_REQUEST_PIXELS={settings.max_request_pixels:,}; send fewer or smaller images per request",
            )
    return np.stack([_checked(name, lambda: decode_image(data, size, settings.max_image_pixels)) for name, data in uploads]), sizes


def _checked(name: str, read):
    """`read()`, with the imaging errors as client errors that name the file."""
    try:
        return read()
    except ImageTooLarge as error:
        raise ApiError(413, f"file '{name}': {error} (MAX_IMAGE_PIXELS)") from None
    except UnsupportedImageFormat as error:
        raise ApiError(415, f"file '{name}': {error} (send JPEG or PNG)") from None
    except ImageDecodeError as error:
        raise ApiError(400, f"file '{name}': {error}") from None
