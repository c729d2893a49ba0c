"""The Open Inference Protocol (V2), the REST dialect of KServe, MLServer and Triton, beside /predict.

The same model, batcher, hot swap and upload limits as /predict. The one model is named like
the registered model; its one version is the version being served. Each request sends exactly
one input:
- `image_pixels`: UINT8 [N, H, W, 3] RGB pixels of any H and W (resized as uploads are);
- `image_files`: BYTES [N], each element an encoded JPEG or PNG file.
Tensor data comes in JSON (`data`; BYTES elements as base64 text) or after the JSON in Triton's
binary tensor extension (header `Inference-Header-Content-Length`, tritonclient's default).
Outputs: `probability_malignant` FP32 [N] and `label` BYTES [N], with the `model_version`
that answered, its `threshold` and the `prediction_ids` (for POST /feedback) in `parameters`. Errors answer `{"error": "..."}`.
"""

import base64
import binascii
import json
import struct
import time
from dataclasses import dataclass
from functools import partial

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from serving.errors import V2_PREFIX, ApiError
from serving.inference import (
    ImageFacts,
    classify,
    decode_files,
    decode_off_loop,
    holder_of,
    log_predictions,
    served_model,
    settings_of,
)
from serving.model import LoadedModel
from serving.prediction_log import pixel_facts, prediction_records
from serving.settings import Settings
from skin_cancer_contract.imaging import resize_images
from skin_cancer_contract.registry import REGISTERED_MODEL_NAME

router = APIRouter(prefix=V2_PREFIX, tags=["Open Inference Protocol (V2)"])
SERVER_NAME = "skin-cancer-serving"
PIXELS, FILES = "image_pixels", "image_files"
INPUT_TYPES = {PIXELS: "UINT8", FILES: "BYTES"}
PROBABILITY, LABEL = "probability_malignant", "label"
OUTPUT_TYPES = {PROBABILITY: "FP32", LABEL: "BYTES"}
HEADER_LENGTH = "Inference-Header-Content-Length"
_INFER_BODY = {
    "requestBody": {
        "required": True,
        "description": f"One input, '{PIXELS}' (UINT8 [N, H, W, 3]) or '{FILES}' (BYTES [N] of JPEG/PNG files).",
        "content": {
            "application/json": {
                "example": {"inputs": [{"name": PIXELS, "datatype": "UINT8", "shape": [1, 2, 2, 3], "data": [0] * 12}]}
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@dataclass(frozen=True)
class _Input:
    name: str
    shape: tuple[int, ...]
    data: object
    """The JSON `data`, or None when the tensor came as binary data."""
    raw: bytes | None


@router.get("")
async def server_metadata(request: Request):
    """Server name, version and protocol extensions."""
    return {"name": SERVER_NAME, "version": request.app.version, "extensions": ["binary_tensor_data"]}


@router.get("/health/live")
async def server_live():
    """Liveness: the process answers."""
    return {"live": True}


@router.get("/health/ready")
async def server_ready(request: Request):
    """Readiness: 200 once a model is loaded, 503 before."""
    ready = holder_of(request).current is not None
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


@router.get("/models/{name}")
@router.get("/models/{name}/versions/{version}")
async def model_metadata(request: Request, name: str, version: str | None = None):
    """The model's served version, inputs and outputs."""
    model = _served(request, name, version)
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "keras",
        "inputs": [{"name": PIXELS, "datatype": "UINT8", "shape": [-1, -1, -1, 3]}, {"name": FILES, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": output, "datatype": datatype, "shape": [-1]} for output, datatype in OUTPUT_TYPES.items()],
    }


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{version}/ready")
async def model_ready(request: Request, name: str, version: str | None = None):
    """200 when this model (and version) is the one being served."""
    model = _served(request, name, version)
    return {"name": model.name, "version": model.version, "ready": True}


@router.post("/models/{name}/infer", openapi_extra=_INFER_BODY)
@router.post("/models/{name}/versions/{version}/infer", openapi_extra=_INFER_BODY)
async def infer(request: Request, name: str, version: str | None = None):
    """Malignant probability and label of each image of the one input tensor."""
    received = time.perf_counter()
    model = _served(request, name, version)
    settings = settings_of(request)
    body = await request.body()  # serving.front_door limits its size and pace
    inference_request, outputs, images, facts = await decode_off_loop(
        request, _decode, body, request.headers.get(HEADER_LENGTH), model.image_size, settings
    )
    probabilities = await classify(request, model, images, received)
    records = prediction_records(model, probabilities, received, settings.prediction_id_key)
    log_predictions(request, records, facts)
    return _answer(inference_request, outputs, model, records)


def _served(request: Request, name: str, version: str | None) -> LoadedModel:
    if name != REGISTERED_MODEL_NAME:
        raise ApiError(404, f"unknown model '{name}': this server serves '{REGISTERED_MODEL_NAME}'")
    model = served_model(request)
    if version is not None and version != model.version:
        raise ApiError(404, f"version {version} of '{name}' is not served: version {model.version} is")
    return model


def _decode(body: bytes, header_length: str | None, size: int, settings: Settings) -> tuple[dict, list[tuple[str, bool]], np.ndarray, ImageFacts]:
    """The inference request, the outputs it asks for, its images as one batch and their facts for
    the prediction log; blocking (JSON parsing, decoding), for the decode pool."""
    inference_request, binary = _parse(body, header_length)
    tensor = _one_input(inference_request, binary)
    outputs = _requested_outputs(inference_request)
    images, facts = _images(tensor, size, settings)
    return inference_request, outputs, images, facts


def _parse(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON inference request and the binary tensor data after it."""
    split = len(body)
    if header_length is not None:
        if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(body):
            raise ApiError(400, f"{HEADER_LENGTH}={header_length!r} is not a length within the body")
        split = int(header_length)
    try:
        parsed = json.loads(body[:split])
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise ApiError(400, "the inference request is not JSON (or nests too deep)") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("inputs"), list):
        raise ApiError(400, "the inference request needs a list 'inputs'")
    return parsed, body[split:]


def _one_input(inference_request: dict, binary: bytes) -> _Input:
    inputs = inference_request["inputs"]
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ApiError(400, f"send exactly one input, '{PIXELS}' (UINT8) or '{FILES}' (BYTES); got {len(inputs)}")
    tensor = inputs[0]
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if name not in INPUT_TYPES:
        raise ApiError(400, f"unknown input '{name}': send '{PIXELS}' (UINT8) or '{FILES}' (BYTES)")
    if datatype != INPUT_TYPES[name]:
        raise ApiError(400, f"input '{name}' has datatype {INPUT_TYPES[name]}, not {datatype}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ApiError(400, f"input '{name}': shape must be a list of non-negative integers, got {shape!r}")
    size = _parameters(tensor, f"input '{name}'").get("binary_data_size")
    if size is not None:
        if size != len(binary):
            raise ApiError(400, f"input '{name}': binary_data_size is {size}, but {len(binary)} bytes follow the JSON")
        return _Input(name, tuple(shape), None, binary)
    if "data" not in tensor:
        raise ApiError(400, f"input '{name}' has neither 'data' nor binary data")
    return _Input(name, tuple(shape), tensor["data"], None)


def _requested_outputs(inference_request: dict) -> list[tuple[str, bool]]:
    """(name, as binary data) of each output to answer; all of them when none are named."""
    binary = bool(_parameters(inference_request, "the request").get("binary_data_output", False))
    wanted = inference_request.get("outputs")
    if wanted is None:
        return [(name, binary) for name in OUTPUT_TYPES]
    if not isinstance(wanted, list) or not all(isinstance(w, dict) and w.get("name") in OUTPUT_TYPES for w in wanted):
        raise ApiError(400, f"outputs may only name {sorted(OUTPUT_TYPES)}")
    return [(w["name"], bool(_parameters(w, f"output '{w['name']}'").get("binary_data", binary))) for w in wanted]


def _parameters(part: dict, what: str) -> dict:
    """The `parameters` object of a request, input or output; absent: empty."""
    parameters = part.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ApiError(400, f"{what}: 'parameters' must be an object")
    return parameters


def _images(tensor: _Input, size: int, settings: Settings) -> tuple[np.ndarray, ImageFacts]:
    """The input as a (N, size, size, 3) uint8 batch, its limits checked before any pixel is touched,
    and its facts for the prediction log, to compute later; blocking."""
    if tensor.name == PIXELS:
        pixels = _pixels(tensor, settings)
        images = resize_images(pixels, size)
        return images, partial(pixel_facts, pixels, images)
    return decode_files(_files(tensor, settings), size, settings)


def _pixels(tensor: _Input, settings: Settings) -> np.ndarray:
    if len(tensor.shape) != 4 or tensor.shape[3] != 3 or 0 in tensor.shape:
        raise ApiError(400, f"input '{PIXELS}' must have shape [N, H, W, 3] with N, H, W > 0, got {list(tensor.shape)}")
    count, height, width, _ = tensor.shape
    _check_count(count, settings)
    if width * height > settings.max_image_pixels:
        raise ApiError(413, f"input '{PIXELS}': {width}x{height} pixels per image is over the limit of {settings.max_image_pixels:,} pixels (MAX_IMAGE_PIXELS)")
    if count * width * height > settings.max_request_pixels:
        raise ApiError(413, f"input '{PIXELS}': {count * width * height:,} pixels in all, over MAX_REQUEST_PIXELS={settings.max_request_pixels:,}")
    expected = count * height * width * 3
    if tensor.raw is not None:
        if len(tensor.raw) != expected:
            raise ApiError(400, f"input '{PIXELS}': shape {list(tensor.shape)} needs {expected} bytes, got {len(tensor.raw)}")
        return np.frombuffer(tensor.raw, np.uint8).reshape(tensor.shape)
    try:
        values = np.asarray(tensor.data)
    except ValueError:
        values = np.asarray([])
    if values.size != expected or values.dtype.kind not in "iu" or values.min() < 0 or values.max() > 255:
        raise ApiError(400, f"input '{PIXELS}': 'data' must hold {expected} integers from 0 to 255 for shape {list(tensor.shape)}")
    return values.astype(np.uint8).reshape(tensor.shape)


def _files(tensor: _Input, settings: Settings) -> list[tuple[str, bytes]]:
    if len(tensor.shape) != 1 or tensor.shape[0] == 0:
        raise ApiError(400, f"input '{FILES}' must have shape [N] with N > 0, got {list(tensor.shape)}")
    count = tensor.shape[0]
    _check_count(count, settings)
    files = _unpack_bytes(tensor.raw, count) if tensor.raw is not None else _base64_elements(tensor.data)
    if len(files) != count:
        raise ApiError(400, f"input '{FILES}': shape [{count}] but {len(files)} elements")
    return [(f"{FILES}[{index}]", data) for index, data in enumerate(files)]


def _check_count(count: int, settings: Settings) -> None:
    if count > settings.max_files:
        raise ApiError(413, f"too many images: {count}, at most MAX_FILES={settings.max_files} per request")


def _unpack_bytes(raw: bytes, count: int) -> list[bytes]:
    """BYTES elements in the binary extension: each a 4-byte little-endian length and the bytes."""
    elements, offset = [], 0
    while offset < len(raw) and len(elements) <= count:
        if offset + 4 > len(raw):
            raise ApiError(400, f"input '{FILES}': binary data ends inside an element's length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise ApiError(400, f"input '{FILES}': element {len(elements)} is cut short")
        elements.append(raw[offset : offset + length])
        offset += length
    return elements


def _base64_elements(data) -> list[bytes]:
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise ApiError(400, f"input '{FILES}': in JSON, 'data' must be a list of base64 strings")
    try:
        return [base64.b64decode(item, validate=True) for item in data]
    except binascii.Error:
        raise ApiError(400, f"input '{FILES}': an element is not valid base64") from None


def _answer(inference_request: dict, outputs: list[tuple[str, bool]], model: LoadedModel, records: list[dict]) -> Response:
    labels = [record["label"].encode() for record in records]
    values = {PROBABILITY: np.asarray([record["probability_malignant"] for record in records], dtype="<f4"), LABEL: labels}
    tensors, chunks = [], []
    for name, binary in outputs:
        tensor = {"name": name, "datatype": OUTPUT_TYPES[name], "shape": [len(labels)]}
        if binary:
            raw = values[name].tobytes() if name == PROBABILITY else b"".join(struct.pack("<I", len(b)) + b for b in labels)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = values[name].tolist() if name == PROBABILITY else [label.decode() for label in labels]
        tensors.append(tensor)
    answer = {"model_name": model.name, "model_version": model.version, "parameters": {"threshold": model.threshold, "prediction_ids": [record["prediction_id"] for record in records]}, "outputs": tensors}
    if "id" in inference_request:
        answer["id"] = inference_request["id"]
    header = json.dumps(answer).encode()
    if not chunks:
        return Response(header, media_type="application/json")
    return Response(header + b"".join(chunks), media_type="application/octet-stream", headers={HEADER_LENGTH: str(len(header))})
