"""Hostile uploads against the real server, through /predict and through V2: each is refused with
a JSON 4xx that names the file, within a second, and the server's memory stays flat.

The files are small and real: PNG decompression bombs (valid PNGs of 48 to 200 megapixels in a
few KB), other image formats, EPS, and more files or pixels than one request may carry.
"""

import time

import httpx
import pytest
from tests.serving.serving_support import blank_png, encode, v2_files_request

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n"
INFER = "/v2/models/skin-cancer-classifier/infer"


CASES = (
    "200-megapixel PNG bomb",
    "four 90-megapixel PNGs",
    "64 bombs",
    "48-megapixel PNG",
    "over the request's pixel budget",
    "EPS",
    "GIF",
    "TIFF",
    "BMP",
    "WebP",
    "65 files, over MAX_FILES",
)


@pytest.fixture(scope="module")
def hostile(lesion) -> dict[str, tuple[list[tuple[str, bytes]], int, int | str]]:
    """Case -> (files of one request, expected status, the index of the file at fault or the limit named)."""
    bomb = blank_png(20000, 10000)
    small = encode(lesion.resize((8, 8)), "PNG")
    cases = {
        "200-megapixel PNG bomb": ([("bomb.png", bomb)], 413, 0),
        "four 90-megapixel PNGs": ([(f"big-{i}.png", blank_png(9500, 9500)) for i in range(4)], 413, 0),
        "64 bombs": ([(f"bomb-{i}.png", bomb) for i in range(64)], 413, 0),
        "48-megapixel PNG": ([("wide.png", blank_png(8000, 6000))], 413, 0),
        "over the request's pixel budget": ([(f"part-{i}.png", blank_png(6000, 6000)) for i in range(3)], 413, 2),
        "EPS": ([("lesion.eps", EPS)], 415, 0),
        "GIF": ([("lesion.gif", encode(lesion, "GIF"))], 415, 0),
        "TIFF": ([("lesion.tiff", encode(lesion, "TIFF"))], 415, 0),
        "BMP": ([("lesion.bmp", encode(lesion, "BMP"))], 415, 0),
        "WebP": ([("lesion.webp", encode(lesion, "WEBP"))], 415, 0),
        "65 files, over MAX_FILES": ([(f"tiny-{i}.png", small) for i in range(65)], 413, "MAX_FILES"),
    }
    assert tuple(cases) == CASES
    return cases


def post_predict(client: httpx.Client, files: list[tuple[str, bytes]]) -> httpx.Response:
    return client.post("/predict", files=[("file", (name, data, "application/octet-stream")) for name, data in files])


def post_v2_files(client: httpx.Client, files: list[tuple[str, bytes]]) -> httpx.Response:
    """A V2 infer request with the files as a BYTES tensor in Triton's binary data extension."""
    body, headers = v2_files_request([data for _, data in files])
    return client.post(INFER, content=body, headers=headers)


def _timed(send, client, files) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = send(client, files)
    return response, time.perf_counter() - started


@pytest.mark.parametrize("case", CASES)
def test_predict_refuses_at_once_and_names_the_file(client, hostile, case):
    files, status, culprit = hostile[case]
    named = files[culprit][0] if isinstance(culprit, int) else culprit
    response, seconds = _timed(post_predict, client, files)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert named in response.json()["detail"]
    assert seconds < 1.0, f"{case} took {seconds:.2f} s"


@pytest.mark.parametrize("case", CASES)
def test_v2_refuses_the_same_files_at_once(client, hostile, case):
    files, status, culprit = hostile[case]
    named = f"image_files[{culprit}]" if isinstance(culprit, int) else culprit  # V2 elements have no names
    response, seconds = _timed(post_v2_files, client, files)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert named in response.json()["error"]
    assert seconds < 1.0, f"{case} took {seconds:.2f} s"


@pytest.mark.parametrize(
    ("shape", "named"),
    [([1, 20000, 10000, 3], "MAX_IMAGE_PIXELS"), ([65, 8, 8, 3], "MAX_FILES"), ([3, 6000, 6000, 3], "MAX_REQUEST_PIXELS")],
)
def test_v2_pixel_tensors_are_checked_by_their_shape_before_their_data(client, shape, named):
    request = {"inputs": [{"name": "image_pixels", "datatype": "UINT8", "shape": shape, "data": [0] * 12}]}
    response, seconds = _timed(lambda c, body: c.post(INFER, json=body), client, request)
    assert response.status_code == 413, response.text
    assert named in response.json()["error"]
    assert seconds < 1.0


def test_memory_stays_flat_under_hostile_uploads(serving, client, hostile):
    def one_round() -> None:
        for files, status, _ in hostile.values():
            assert post_predict(client, files).status_code == status
            assert post_v2_files(client, files).status_code == status

    one_round()  # first use: imports, allocator pools
    before = serving.rss_mb()
    for _ in range(3):
        one_round()
    grown = serving.rss_mb() - before
    assert grown < 20, f"the server grew by {grown:.0f} MB over 3 rounds of hostile uploads"
    assert client.get("/ready").status_code == 200
