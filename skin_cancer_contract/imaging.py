"""Image decoding and resizing shared by preprocessing, serving and re-scoring: one path, the same pixels.

Only JPEG and PNG are ever opened, so no other PIL plugin (EPS and its Ghostscript, TIFF, ...)
sees untrusted bytes. Width and height come from the header, which PIL reads without
decoding pixels, so an image over a pixel limit is refused before it costs memory.
"""

import io
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, UnidentifiedImageError

FORMATS = ("JPEG", "PNG")
"""The only formats opened: what the data set and the app's users have."""
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


class ImageDecodeError(ValueError):
    """Raised when bytes are not a readable image; the message says why."""


class UnsupportedImageFormat(ImageDecodeError):
    """The bytes are not a JPEG or PNG (another image format, or no image at all)."""


class ImageTooLarge(ImageDecodeError):
    """The header declares more pixels than allowed: refused before any decode."""


def image_size(data: bytes, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) from the header alone; raises like `decode_image` does, without decoding."""
    with open_image(data, max_pixels) as image:
        return image.size


def decode_image(data: bytes, size: int, max_pixels: int | None = None) -> np.ndarray:
    """Decode JPEG or PNG bytes into a `size` x `size` RGB uint8 array.

    Any colour mode is converted to RGB; images of another size are resized with bilinear
    filtering. Raises ImageDecodeError for empty, truncated or non-image bytes,
    UnsupportedImageFormat for other formats, and ImageTooLarge above `max_pixels`
    (None: only PIL's own decompression-bomb limit applies).
    """
    with open_image(data, max_pixels) as image:
        try:
            if image.format == "JPEG" and image.size[0] >= 2 * size and image.size[1] >= 2 * size:
                image.draft("RGB", (size, size))  # let libjpeg downscale while decoding
            return _square_rgb(image.convert("RGB"), size)
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageDecodeError(f"unreadable image: {error}") from error


@contextmanager
def open_image(data: bytes, max_pixels: int | None = None) -> Iterator[Image.Image]:
    """The JPEG or PNG in `data`, opened lazily (header read, pixels not yet decoded)."""
    if not data:
        raise ImageDecodeError("empty file")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError as error:
        if data.startswith(_SIGNATURES):
            raise ImageDecodeError("unreadable image: damaged JPEG or PNG header") from error
        raise UnsupportedImageFormat("not a JPEG or PNG image") from error
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(f"image is far over the pixel limit ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError(f"unreadable image: {error}") from error
    with image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageTooLarge(f"{width}x{height} pixels is over the limit of {max_pixels:,} pixels")
        yield image


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """A uint8 (N, H, W, 3) batch resized to `size` x `size` exactly as `decode_image` resizes."""
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([_square_rgb(Image.fromarray(image), size) for image in images])


def _square_rgb(image: Image.Image, size: int) -> np.ndarray:
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)
