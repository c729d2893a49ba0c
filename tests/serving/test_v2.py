"""The Open Inference Protocol (V2) routes, driven by a client nobody here wrote: `tritonclient[http]`."""

import io
import json
import time

import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image
from tests.serving.serving_support import encode
from tritonclient.utils import InferenceServerException

MODEL = "skin-cancer-classifier"


@pytest.fixture
def triton_client(serving):
    client = triton.InferenceServerClient(serving.url.removeprefix("http://"))
    yield client
    client.close()


def _pixels_input(pixels: np.ndarray, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("image_pixels", list(pixels.shape), "UINT8")
    return tensor.set_data_from_numpy(pixels, binary_data=binary)


def _files_input(files: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput("image_files", [len(files)], "BYTES")
    return tensor.set_data_from_numpy(np.array(files, dtype=np.object_))


def _predict(client, files: list[tuple[str, bytes]]) -> dict:
    response = client.post("/predict", files=[("file", (name, data, "image/png")) for name, data in files])
    assert response.status_code == 200, response.text
    return response.json()


def test_health_and_metadata(triton_client, smoke_champion):
    version = smoke_champion["version"]
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready(MODEL)
    assert triton_client.is_model_ready(MODEL, version)
    assert not triton_client.is_model_ready(MODEL, "999999")
    assert not triton_client.is_model_ready("another-model")
    assert "binary_tensor_data" in triton_client.get_server_metadata()["extensions"]
    metadata = triton_client.get_model_metadata(MODEL)
    assert metadata["name"] == MODEL and metadata["versions"] == [version]
    assert {(i["name"], i["datatype"]) for i in metadata["inputs"]} == {("image_pixels", "UINT8"), ("image_files", "BYTES")}
    assert {(o["name"], o["datatype"]) for o in metadata["outputs"]} == {("probability_malignant", "FP32"), ("label", "BYTES")}
    assert triton_client.get_model_metadata(MODEL, version) == metadata


def test_infer_encoded_files_agrees_with_predict(triton_client, client, jpeg, lesion, smoke_champion):
    files = [("lesion.jpg", jpeg), ("lesion.png", encode(lesion, "PNG"))]
    expected = _predict(client, files)["predictions"]

    result = triton_client.infer(MODEL, [_files_input([data for _, data in files])])

    answer = result.get_response()
    assert answer["model_name"] == MODEL and answer["model_version"] == smoke_champion["version"]
    np.testing.assert_allclose(result.as_numpy("probability_malignant"), [p["probability_malignant"] for p in expected], rtol=1e-5)
    assert [label.decode() for label in result.as_numpy("label")] == [p["label"] for p in expected]


@pytest.mark.parametrize("binary", [True, False], ids=["binary data", "JSON data"])
def test_infer_pixels_agrees_with_predict_on_the_same_pixels(triton_client, client, jpeg, binary):
    with Image.open(io.BytesIO(jpeg)) as image:
        pixels = np.asarray(image.convert("RGB"))[None]
    expected = _predict(client, [("pixels.png", encode(Image.fromarray(pixels[0]), "PNG"))])["predictions"][0]
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("probability_malignant", "label")]

    result = triton_client.infer(MODEL, [_pixels_input(pixels, binary)], outputs=outputs)

    assert result.as_numpy("probability_malignant")[0] == pytest.approx(expected["probability_malignant"], rel=1e-5)
    label = result.as_numpy("label")[0]
    assert (label.decode() if isinstance(label, bytes) else label) == expected["label"]


def test_infer_through_the_version_route(triton_client, jpeg, smoke_champion):
    result = triton_client.infer(MODEL, [_files_input([jpeg])], model_version=smoke_champion["version"])
    assert result.get_response()["model_version"] == smoke_champion["version"]
    with pytest.raises(InferenceServerException) as refused:
        triton_client.infer(MODEL, [_files_input([jpeg])], model_version="999999")
    assert refused.value.status() == "404" and "not served" in refused.value.message()


@pytest.mark.parametrize(
    ("make_input", "status", "named"),
    [
        (lambda lesion: _files_input([b"%!PS-Adobe-3.0 EPSF-3.0\n"]), "415", "image_files[0]"),
        (lambda lesion: _files_input([encode(lesion, "PNG"), encode(lesion, "GIF")]), "415", "image_files[1]"),
        (lambda lesion: _files_input([b"\xff\xd8\xff"]), "400", "image_files[0]"),
        (lambda lesion: _pixels_input(np.zeros((1, 4, 4, 4), np.uint8), True), "400", "[N, H, W, 3]"),
    ],
    ids=["EPS", "GIF second", "damaged JPEG", "four channels"],
)
def test_bad_inputs_answer_the_protocols_error(triton_client, client, lesion, jpeg, make_input, status, named):
    with pytest.raises(InferenceServerException) as refused:
        triton_client.infer(MODEL, [make_input(lesion)])
    assert refused.value.status() == status and named in refused.value.message()
    assert triton_client.infer(MODEL, [_files_input([jpeg])]).as_numpy("label").shape == (1,)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v2/models/another-model/infer", {"inputs": []}, 404),
        ("/v2/models/skin-cancer-classifier/infer", b"not json", 400),
        ("/v2/models/skin-cancer-classifier/infer", {"inputs": []}, 400),
        ("/v2/models/skin-cancer-classifier/infer", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}, 400),
        ("/v2/no-such-route", None, 404),
    ],
    ids=["unknown model", "not JSON", "no input", "unknown input", "unknown route"],
)
def test_errors_are_json_error_objects(client, path, body, status):
    if body is None:
        response = client.get(path)
    elif isinstance(body, bytes):
        response = client.post(path, content=body)
    else:
        response = client.post(path, json=body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and response.json()["error"]


INFER = "/v2/models/skin-cancer-classifier/infer"
PIXELS = {"name": "image_pixels", "datatype": "UINT8", "shape": [1, 2, 2, 3], "data": [0] * 12}
MALFORMED = {
    "nested 100,000 deep": (b"[" * 100_000 + b"]" * 100_000, {}),
    "nested in an input": (b'{"inputs": [{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}", {}),
    "not UTF-8": (b'{"inputs": "\xff\xfe"}', {}),
    "parameters not an object": (json.dumps({"inputs": [PIXELS], "parameters": "binary"}).encode(), {}),
    "input parameters not an object": (json.dumps({"inputs": [{**PIXELS, "parameters": [1]}]}).encode(), {}),
    "output parameters not an object": (json.dumps({"inputs": [PIXELS], "outputs": [{"name": "label", "parameters": 3}]}).encode(), {}),
    "header length an Arabic-Indic digit": (json.dumps({"inputs": [PIXELS]}).encode(), {"Inference-Header-Content-Length": "\u0663".encode()}),
    "header length a superscript digit": (json.dumps({"inputs": [PIXELS]}).encode(), {"Inference-Header-Content-Length": "\u00b2".encode("latin-1")}),
    "header length negative": (json.dumps({"inputs": [PIXELS]}).encode(), {"Inference-Header-Content-Length": b"-1"}),
    "header length past the body": (json.dumps({"inputs": [PIXELS]}).encode(), {"Inference-Header-Content-Length": b"99999"}),
}


@pytest.mark.parametrize(("body", "headers"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_requests_answer_400_at_once(client, body, headers):
    started = time.perf_counter()
    response = client.post(INFER, content=body, headers={"Content-Type": "application/json", **headers})
    seconds = time.perf_counter() - started
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}
    assert seconds < 1, f"took {seconds:.2f} s"
    assert client.get("/ready").status_code == 200
