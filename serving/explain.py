"""Why this answer: an occlusion-sensitivity heat map of one image (`POST /explain`).

Occlusion, not Grad-CAM: it needs only the model's predictions, so it explains whatever version
serving holds (one network or an ensemble of them) the same way. Square patches a quarter of the
image's side, at 7 x 7 places about an eighth of the side apart, are masked with the image's mean
colour, one at a time (49 masked copies); each pixel's score is the mean drop of the probability of malignant over the
patches that cover it. Positive (red): masking it lowers the probability, it speaks for malignant;
negative (blue): it speaks for benign.

The copies go through serving's shared batcher like /predict's images, and one explanation runs
at a time: at most 50 of the batcher's queued images are an explanation's, so /predict keeps its
place in the queue and its admission.
"""

import asyncio
import io
import time
from contextlib import asynccontextmanager

import numpy as np
from PIL import Image
from starlette.requests import Request

from serving.errors import ApiError
from serving.inference import RETRY_LATER, classify, settings_of
from serving.model import LoadedModel

METHOD = "occlusion"
PLACES_PER_AXIS = 7
IMAGES_PER_EXPLANATION = PLACES_PER_AXIS**2 + 1
"""The image and its masked copies: what one explanation asks of the batcher."""
RED = (220, 30, 30)
BLUE = (30, 90, 220)
MAX_OPACITY = 200
"""Alpha of the strongest region: the image under it stays visible."""


def patch_starts(size: int) -> list[int]:
    """Where the patches of one axis start: evenly spread, the first and last flush with the edges."""
    return [int(start) for start in np.linspace(0, size - max(1, size // 4), PLACES_PER_AXIS).round()]


def occluded_copies(image: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The image followed by one copy per patch masked with its mean colour, and each patch's corner."""
    size = image.shape[0]
    patch = max(1, size // 4)
    fill = image.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    corners = [(top, left) for top in patch_starts(size) for left in patch_starts(size)]
    copies = np.repeat(image[None], len(corners) + 1, axis=0)
    for copy, (top, left) in zip(copies[1:], corners):
        copy[top : top + patch, left : left + patch] = fill
    return copies, corners


def sensitivity(size: int, probabilities: np.ndarray, corners: list[tuple[int, int]]) -> np.ndarray:
    """(size, size) mean drop of the probability over the patches covering each pixel; `probabilities`
    are the unmasked image's, then each masked copy's."""
    patch = max(1, size // 4)
    total, covered = np.zeros((size, size)), np.zeros((size, size))
    for drop, (top, left) in zip(probabilities[0] - probabilities[1:], corners):
        total[top : top + patch, left : left + patch] += drop
        covered[top : top + patch, left : left + patch] += 1
    return total / covered


def heat_map_png(scores: np.ndarray) -> bytes:
    """A transparent RGBA PNG to lay over the image: red where masking lowers the probability of
    malignant, blue where it raises it, opacity in proportion to the change (the largest at MAX_OPACITY)."""
    largest = float(np.abs(scores).max())
    alpha = np.abs(scores) / largest * MAX_OPACITY if largest > 0 else np.zeros_like(scores)
    rgba = np.empty((*scores.shape, 4), np.uint8)
    rgba[..., :3] = np.where((scores >= 0)[..., None], RED, BLUE)
    rgba[..., 3] = alpha.round()
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


async def explain(request: Request, model: LoadedModel, image: np.ndarray, received: float) -> tuple[float, np.ndarray]:
    """The image's probability of malignant and its (S, S) occlusion scores, from `model`."""
    copies, corners = occluded_copies(image)
    async with _one_explanation_at_a_time(request, received):
        probabilities = await classify(request, model, copies, received)
    return float(probabilities[0]), sensitivity(image.shape[0], probabilities, corners)


@asynccontextmanager
async def _one_explanation_at_a_time(request: Request, received: float):
    """Wait for the running explanation to end, by the request's deadline, else 503."""
    lock: asyncio.Lock = request.app.state.explaining
    deadline_s = settings_of(request).request_deadline_s
    try:
        async with asyncio.timeout(deadline_s - (time.perf_counter() - received) if deadline_s else None):
            await lock.acquire()
    except TimeoutError:
        raise ApiError(503, "busy: other explanations are running; retry shortly", headers=RETRY_LATER) from None
    try:
        yield
    finally:
        lock.release()
