"""What serving's clients (the deploy targets, the app) need to know about its HTTP API."""

DEFAULT_SERVING_URL = "http://127.0.0.1:8000"
"""Where the deploy targets and the app find serving (SERVING_URL)."""
UPLOAD_FIELD = "file"
"""The multipart field of `POST /predict` that carries the images (repeat it for several)."""
