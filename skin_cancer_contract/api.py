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
EXPLAIN_ROUTE = "/explain"
"""`POST` one image (multipart field `file`): a PNG heat map of where it drives the answer (occlusion sensitivity)."""
PROBABILITY_HEADER = "X-Probability-Malignant"
"""The explained image's probability of malignant, in /explain's answer."""
MODEL_VERSION_HEADER = "X-Model-Version"
"""The model version that /explain's answer comes from."""
EXPLANATION_METHOD_HEADER = "X-Explanation-Method"
"""How /explain made its heat map (`occlusion`)."""
LARGEST_CHANGE_HEADER = "X-Largest-Change"
"""The largest change of the probability that masking one region of the image made: the heat map's full scale."""
