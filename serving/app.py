"""The FastAPI model server: `uvicorn serving.app:app`.

The model is loaded in the background at start (retried until one exists) and on
`POST /admin/reload`, never per request; the server answers /health at once and /predict as
soon as a model is loaded. Concurrent requests, from /predict and from the Open Inference
Protocol's /v2 routes alike, are batched into shared model calls (see serving.batcher).
"""

import asyncio
import logging
import time
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving import metrics, v2
from serving.batcher import MicroBatcher
from serving.errors import ApiError, install_error_handlers
from serving.explain import METHOD, explain, heat_map_png
from serving.front_door import FrontDoor
from serving.holder import ModelHolder
from serving.inference import (
    classify,
    decode_files,
    decode_off_loop,
    decode_pool,
    log_predictions,
    prediction_log_of,
    served_model,
    settings_of,
)
from serving.model import LoadedModel, load_model
from serving.prediction_log import issued_prediction_id, now_iso, prediction_log_for, prediction_records
from serving.schemas import (
    Error,
    Health,
    Info,
    ModelDetails,
    Feedback,
    FeedbackAccepted,
    ModelRef,
    NoModel,
    Prediction,
    PredictResponse,
    Ready,
    RecentPredictions,
    ReloadAccepted,
    ReloadStatus,
)
from serving.settings import Settings
from serving.uploads import FIELD, decode_uploads, read_uploads
from skin_cancer_contract.api import (
    EXPLAIN_ROUTE,
    EXPLANATION_METHOD_HEADER,
    LARGEST_CHANGE_HEADER,
    MODEL_VERSION_HEADER,
    PROBABILITY_HEADER,
)
from skin_cancer_contract.monitoring import FEEDBACK
from skin_cancer_contract.registry import REGISTERED_MODEL_NAME


def _log_to_stderr() -> None:
    """Show serving's own log lines (loads, swaps, failures) next to uvicorn's."""
    log = logging.getLogger("serving")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


@asynccontextmanager
async def lifespan(app: FastAPI):
    _log_to_stderr()
    settings = Settings.from_env()
    holder = ModelHolder(
        settings.model_uri,
        load_model,
        on_load=metrics.record_load,
        retry_max_s=settings.load_retry_max_s,
        remembered=settings.last_model_file,
    )
    batcher = MicroBatcher(
        settings.max_batch,
        settings.batch_wait_s,
        settings.predict_timeout_s,
        max_queued_images=settings.max_queued_images,
        on_batch=metrics.BATCH_SIZE.observe,
        calls=settings.model_calls,
    )
    app.state.settings, app.state.holder, app.state.batcher = settings, holder, batcher
    app.state.explaining = asyncio.Lock()  # one explanation at a time (serving.explain)
    metrics.QUEUED_IMAGES.set_function(batcher.queued_images)
    app.state.decode_pool = decode_pool(settings)
    app.state.prediction_log = prediction_log_for(settings)
    batcher.start()
    if app.state.prediction_log is not None:
        app.state.prediction_log.start()
    holder.reload()
    yield
    await batcher.stop()
    app.state.decode_pool.shutdown(wait=True)  # the requests have ended; their records' facts finish here
    if app.state.prediction_log is not None:
        app.state.prediction_log.stop()


app = FastAPI(
    title="Skin cancer classifier",
    description="Serves the champion skin-lesion classifier from the MLflow registry.",
    version="1.0.0",
    lifespan=lifespan,
)
install_error_handlers(app)
app.add_middleware(FrontDoor)
metrics.instrument(app)  # outside the front door, so its refusals are counted too
app.include_router(v2.router)

_CLIENT_ERRORS = {code: {"model": Error} for code in (400, 413, 415, 422)}
_NO_MODEL = {
    500: {"model": Error, "description": "The model failed (details in the server log)."},
    503: {
        "model": Error,
        "description": "No model is loaded yet, the server is busy (Retry-After), the model call timed out, "
        "or the model answered something that is not a probability.",
    },
}


def _multipart_body(files: dict) -> dict:
    """OpenAPI's request body of a route that reads multipart field `file` itself (schema `files`)."""
    schema = {"type": "object", "required": [FIELD], "properties": {FIELD: files}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


_PREDICT_BODY = _multipart_body(
    {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "description": "One or more JPEG or PNG images of any size and colour mode "
        "(at most MAX_FILES images, MAX_IMAGE_PIXELS each, MAX_REQUEST_PIXELS together).",
    }
)
_EXPLAIN_BODY = _multipart_body({"type": "string", "format": "binary", "description": "One JPEG or PNG image."})


async def _holder(request: Request) -> ModelHolder:  # async: sync dependencies cost a thread hop
    return request.app.state.holder


async def _served_model(request: Request) -> LoadedModel:
    return served_model(request)


@app.get("/health", response_model=Health)
async def health():
    """Liveness: the process answers."""
    return {"status": "ok"}


@app.get("/ready", response_model=Ready, response_model_exclude_none=True, responses={503: {"model": Ready}})
async def ready(holder: ModelHolder = Depends(_holder)):
    """Readiness: a model is loaded and answers /predict."""
    model = holder.current
    if model is None:
        return JSONResponse({"ready": False, "reason": holder.not_ready_reason()}, status_code=503)
    return {"ready": True, "version": model.version, "fallback": holder.fallback}


@app.get("/info", response_model=Info)
async def info(request: Request, holder: ModelHolder = Depends(_holder)):
    """Name and version of the served model (version null until one is loaded), and the upload limits."""
    model = holder.current
    settings: Settings = request.app.state.settings
    return {
        "name": model.name if model else REGISTERED_MODEL_NAME,
        "version": model.version if model else None,
        "model_class": model.model_class if model else None,
        "model_uri": holder.model_uri,
        "limits": {
            "max_upload_mb": settings.max_upload_bytes / 1024 / 1024,
            "max_files": settings.max_files,
            "max_image_pixels": settings.max_image_pixels,
            "max_request_pixels": settings.max_request_pixels,
        },
    }


@app.get("/model", response_model=ModelDetails, responses={503: {"model": NoModel, "description": "No model is loaded."}})
async def model_details(holder: ModelHolder = Depends(_holder)):
    """The served version, its test metrics and threshold, and the state of the last reload.

    Without a model: 503 whose `detail` says why, with the `reload` state as well, so a
    deploy that polls this route sees a failed load at once.
    """
    reload = ReloadStatus(state=holder.state, error=holder.error, requested_at=holder.requested_at)
    model = holder.current
    if model is None:
        detail = f"no model loaded: {holder.not_ready_reason()}"
        return JSONResponse({"detail": detail, "reload": reload.model_dump(mode="json")}, status_code=503)
    return ModelDetails(**model.model_dump(), reload=reload, fallback=holder.fallback)


@app.post(
    "/predict",
    response_model=PredictResponse,
    responses={**_CLIENT_ERRORS, **_NO_MODEL},
    openapi_extra=_PREDICT_BODY,
)
async def predict(request: Request, model: LoadedModel = Depends(_served_model)):
    """Classify each uploaded image (multipart field `file`, repeat it for several images)."""
    received = time.perf_counter()
    settings = settings_of(request)
    uploads = await read_uploads(request, settings)
    images, facts = await decode_off_loop(request, decode_files, uploads, model.image_size, settings)
    probabilities = await classify(request, model, images, received)
    records = prediction_records(model, probabilities, received, settings.prediction_id_key)
    log_predictions(request, records, facts)
    return PredictResponse(
        model=ModelRef(name=model.name, version=model.version, model_class=model.model_class),
        predictions=[
            Prediction(
                prediction_id=record["prediction_id"],
                filename=name,
                label=record["label"],
                probability_malignant=record["probability_malignant"],
                threshold=model.threshold,
                model_version=model.version,
            )
            for (name, _), record in zip(uploads, records)
        ],
    )


@app.post(
    EXPLAIN_ROUTE,
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **_CLIENT_ERRORS, **_NO_MODEL},
    openapi_extra=_EXPLAIN_BODY,
)
async def explain_image(request: Request, model: LoadedModel = Depends(_served_model)):
    """Where one image (multipart field `file`) drives the answer: a transparent PNG heat map, the
    model's input size, to lay over the image (occlusion sensitivity, see serving.explain), with the
    probability of malignant in X-Probability-Malignant. Not written to the prediction log: its 50
    model calls are one explanation, not predictions."""
    received = time.perf_counter()
    settings = settings_of(request)
    uploads = await read_uploads(request, settings)
    if len(uploads) != 1:
        raise ApiError(422, f"{EXPLAIN_ROUTE} explains one image per request, got {len(uploads)} files in field '{FIELD}'")
    images, _ = await decode_off_loop(request, decode_uploads, uploads, model.image_size, settings)
    probability, scores = await explain(request, model, images[0], received)
    headers = {
        PROBABILITY_HEADER: f"{probability:.6f}",
        MODEL_VERSION_HEADER: model.version,
        EXPLANATION_METHOD_HEADER: METHOD,
        LARGEST_CHANGE_HEADER: f"{float(abs(scores).max()):.6f}",
    }
    return Response(await decode_off_loop(request, heat_map_png, scores), media_type="image/png", headers=headers)


@app.get("/monitoring/recent", response_model=RecentPredictions, responses={401: {"model": Error}, 403: {"model": Error}})
async def recent_predictions(request: Request):
    """The last predictions this process answered (time, version, probability, label, latency; no
    image facts) and how many of its prediction records were written or dropped: what the app's
    Production view plots (bearer SERVING_MONITORING_TOKEN, else SERVING_FEEDBACK_TOKEN)."""
    prediction_log = prediction_log_of(request)
    return {
        "started_at": prediction_log.started_at,
        "predictions": prediction_log.totals["submitted"],
        "written": prediction_log.totals["written"],
        "dropped": prediction_log.totals["dropped"],
        "recent": list(prediction_log.recent),
    }


@app.get("/metrics", response_class=Response)
async def prometheus_metrics():
    """Prometheus text: request counts and latency by route, batch sizes, the served version."""
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


@app.post(
    "/admin/reload",
    status_code=202,
    response_model=ReloadAccepted,
    responses={401: {"model": Error}, 403: {"model": Error}},
)
async def reload(request: Request):
    """Load MODEL_URI again in the background and swap it in; poll GET /model for the outcome
    (bearer SERVING_ADMIN_TOKEN, checked by serving.front_door)."""
    holder: ModelHolder = request.app.state.holder
    holder.reload()
    return {"status": "reloading", "model_uri": holder.model_uri}


@app.post(
    "/feedback",
    status_code=202,
    response_model=FeedbackAccepted,
    responses={code: {"model": Error} for code in (401, 403, 404, 422)},
)
async def feedback(request: Request, confirmed: Feedback):
    """Record the confirmed diagnosis of an earlier prediction (by its `prediction_id`) in the prediction log
    (bearer SERVING_FEEDBACK_TOKEN, checked by serving.front_door before the body is read).

    404 for an id this deployment did not issue (its ids are signed with SERVING_PREDICTION_ID_KEY).
    Every confirmation is kept, repeated ones too. `status` is `queued`, or `dropped` when the log's
    queue is full (counted in /metrics).
    """
    if not issued_prediction_id(confirmed.prediction_id, settings_of(request).prediction_id_key):
        raise ApiError(404, f"unknown prediction id {confirmed.prediction_id}: serving issued no such prediction")
    record = {"prediction_id": confirmed.prediction_id, "diagnosis": confirmed.diagnosis, "time": now_iso()}
    queued = prediction_log_of(request).submit(FEEDBACK, [record])
    return {"status": "queued" if queued else "dropped", "prediction_id": confirmed.prediction_id}
