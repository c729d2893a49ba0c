"""Image decoding and resizing shared by preprocessing, serving and re-scoring: one path, the same pixels."""

import io

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageDecodeError(ValueError):
    """Raised when bytes are not a readable image; the message says why."""


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Decode JPEG/PNG/... bytes into a `size` x `size` RGB uint8 array.

    Any colour mode is converted to RGB; images of another size are resized with bilinear
    filtering. Raises ImageDecodeError for empty, truncated or non-image bytes.
    """
    if not data:
        raise ImageDecodeError("empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format == "JPEG" and image.size[0] >= 2 * size and image.size[1] >= 2 * size:
                image.draft("RGB", (size, size))  # let libjpeg downscale while decoding
            return _square_rgb(image.convert("RGB"), size)
    except UnidentifiedImageError as error:
        raise ImageDecodeError("not a recognised image format") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError(f"unreadable image: {error}") from error


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """A uint8 (N, H, W, 3) batch resized to `size` x `size` exactly as `decode_image` resizes."""
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([_square_rgb(Image.fromarray(image), size) for image in images])


def _square_rgb(image: Image.Image, size: int) -> np.ndarray:
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)
