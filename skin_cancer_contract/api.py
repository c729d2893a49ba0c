"""What serving's clients (the deploy targets, the app) need to know about its HTTP API."""

DEFAULT_SERVING_URL = "http://127.0.0.1:8000"
"""Where the deploy targets and the app find serving (SERVING_URL)."""
UPLOAD_FIELD = "file"
"""The multipart field of `POST /predict` that carries the images (repeat it for several)."""
DEFAULT_MAX_UPLOAD_MB = 10
"""Serving's default MAX_UPLOAD_MB: the largest request body; the app takes no larger file."""
DEFAULT_MAX_FILES = 64
"""Serving's default MAX_FILES: the most images in one request."""
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
"""Serving's default MAX_IMAGE_PIXELS: the largest width x height of one image; the app previews no larger one."""
DEFAULT_MAX_REQUEST_PIXELS = 100_000_000
"""Serving's default MAX_REQUEST_PIXELS: the most pixels of all the images of one request together."""
