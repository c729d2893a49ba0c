"""What /predict and the V2 routes share: the served model, decoding off the event loop, the batcher,
the prediction log."""

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
from starlette.requests import Request

from serving.batcher import MicroBatcher, ModelTimeout, Overloaded
from serving.errors import ApiError
from serving.holder import ModelHolder
from serving.metrics import MODEL_TIMEOUTS
from serving.model import LoadedModel, are_probabilities
from serving.prediction_log import PredictionLog, file_facts
from serving.settings import Settings
from serving.uploads import decode_uploads
from skin_cancer_contract.monitoring import PREDICTIONS

log = logging.getLogger(__name__)
RETRY_LATER = {"Retry-After": "1"}


def decode_pool(settings: Settings) -> ThreadPoolExecutor:
    """One decoding thread per CPU the process may use: how many images are decoded at once, and so
    the memory it takes, is bounded."""
    return ThreadPoolExecutor(max_workers=settings.decode_threads, thread_name_prefix="decode")


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def holder_of(request: Request) -> ModelHolder:
    return request.app.state.holder


def prediction_log_of(request: Request) -> PredictionLog:
    """The prediction log, or a 403 when the server runs without one."""
    prediction_log = request.app.state.prediction_log
    if prediction_log is None:
        raise ApiError(403, "the prediction log is off: the server was started with PREDICTION_LOG=off")
    return prediction_log


ImageFacts = Callable[[], list[dict]]
"""Computes each image's facts for the prediction log (sha256, size, statistics) when called."""


def log_predictions(request: Request, records: list[dict], facts: ImageFacts) -> None:
    """Log answered predictions, unless the prediction log is off. Their images' facts are
    computed in the decode pool, off the request path; the records are queued once they have them."""
    prediction_log = request.app.state.prediction_log
    if prediction_log is not None:
        prediction_log.answered(records)
        request.app.state.decode_pool.submit(_submit_with_facts, prediction_log, records, facts)


def _submit_with_facts(prediction_log: PredictionLog, records: list[dict], facts: ImageFacts) -> None:
    try:
        complete = [record | fact for record, fact in zip(records, facts(), strict=True)]
    except Exception:  # never seen; without facts the records would break the drift figures
        log.exception("could not compute the facts of %d images for the prediction log", len(records))
        prediction_log.drop(PREDICTIONS, records, "facts_error")
    else:
        prediction_log.submit(PREDICTIONS, complete)


def served_model(request: Request) -> LoadedModel:
    """The model this request keeps to its end, or a 503 that says why there is none."""
    holder = holder_of(request)
    model = holder.current
    if model is None:
        raise ApiError(503, f"no model loaded: {holder.not_ready_reason()}")
    return model


async def decode_off_loop(request: Request, function, *args):
    """Run a blocking decode in the decode pool."""
    return await asyncio.get_running_loop().run_in_executor(request.app.state.decode_pool, function, *args)


def decode_files(uploads: list[tuple[str, bytes]], size: int, settings: Settings) -> tuple[np.ndarray, ImageFacts]:
    """The uploaded files as one (N, size, size, 3) uint8 batch, and their facts for the prediction
    log, to compute later; blocking, for the decode pool."""
    images, sizes = decode_uploads(uploads, size, settings)
    return images, partial(file_facts, uploads, sizes, images)


async def classify(request: Request, model: LoadedModel, images: np.ndarray, received: float) -> np.ndarray:
    """Malignant probabilities of `images` from `model`, through the shared batcher, by the request's
    deadline (SERVING_REQUEST_DEADLINE_S after `received`, the handler's start on `time.perf_counter()`)."""
    batcher: MicroBatcher = request.app.state.batcher
    deadline_s = settings_of(request).request_deadline_s
    try:
        async with asyncio.timeout(deadline_s - (time.perf_counter() - received) if deadline_s else None):
            probabilities = await batcher.predict(model, images)
    except Overloaded as error:
        raise ApiError(503, f"busy: {error}; retry shortly", headers=RETRY_LATER) from None
    except TimeoutError:
        raise ApiError(503, f"busy: no answer within SERVING_REQUEST_DEADLINE_S={deadline_s:g} s; retry shortly", headers=RETRY_LATER) from None
    except ModelTimeout as error:
        MODEL_TIMEOUTS.inc()
        raise ApiError(503, f"model version {model.version} is too slow right now: {error}") from None
    except Exception:  # a broken model must answer with a reason, not drop the connection
        log.exception("model version %s failed to predict", model.version)
        raise ApiError(500, f"model version {model.version} failed to predict (details in the server log)") from None
    if not are_probabilities(probabilities):
        log.error("model version %s answered values that are not probabilities: %s", model.version, probabilities)
        raise ApiError(503, f"model version {model.version} answered values that are not probabilities in [0, 1]; no label given")
    return probabilities

