"""What the serving tests share: a real uvicorn process, test settings, image encoding, V2 requests, metrics."""

import io
import json
import os
import struct
import sys
import time
import zlib
from pathlib import Path

import httpx
import psutil
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from tests.helpers import VENV_BIN, Service, free_port, wait_for_http

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASET = Path(os.environ.get("SKIN_CANCER_DATA", REPO_ROOT.parent / "shared" / "datasets" / "skin-cancer"))
ADMIN_TOKEN = "serving-test-token"
MAX_UPLOAD_MB = 2


class Serving:
    """`uvicorn serving.app:app` on a free loopback port, with its log kept for failures.

    `launcher`: a module run as `python -m launcher --port N` instead of the uvicorn command.
    """

    def __init__(self, work: Path, env: dict[str, str], launcher: str | None = None, port: int | None = None):
        port = port or free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [str(VENV_BIN / "uvicorn"), "serving.app:app", "--host", "127.0.0.1"]
        if launcher:
            command = [sys.executable, "-m", launcher]
        self.service = Service(
            [*command, "--port", str(port)],
            log_path=work / "serving.log",
            env={"SKIN_CANCER_STATE": str(work / "state"), **env},  # its own state: the last model it loaded
            cwd=REPO_ROOT,
        )
        try:
            wait_for_http(f"{self.url}/health", timeout=60, process=self.service.process)
        except Exception as error:
            self.service.stop()
            raise AssertionError(f"serving did not start: {error}; log:\n{self.service.log_tail()}") from error

    def wait_until(self, condition, what: str, timeout: float = 180.0):
        """Poll `condition(client)` until it returns something truthy; fail with the server log."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while time.monotonic() < deadline:
                result = condition(client)
                if result:
                    return result
                time.sleep(0.2)
        raise AssertionError(f"serving never {what} within {timeout:.0f}s; log:\n{self.service.log_tail()}")

    def rss_mb(self) -> float:
        """Resident memory of the uvicorn process."""
        return psutil.Process(self.service.process.pid).memory_info().rss / 1024 / 1024

    def stop(self) -> None:
        self.service.stop()


def champion_serving(work: Path, smoke_champion: dict, env: dict[str, str]) -> Serving:
    """Serving of the smoke champion with `env` added, once `/ready` answers."""
    server = Serving(work, {"MODEL_URI": smoke_champion["model_uri"], "MLFLOW_TRACKING_URI": smoke_champion["tracking_uri"], **env})
    server.wait_until(lambda client: client.get("/ready").status_code == 200, "became ready")
    return server


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def blank_png(width: int, height: int) -> bytes:
    """A valid black 1-bit PNG of any size, a few KB per 10 megapixels: a decompression bomb.

    Written chunk by chunk, so a 200-megapixel one costs this process 25 MB, not 200.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the packed bits
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row * 1000) for _ in range(height // 1000))
    pixels += compressor.compress(row * (height % 1000)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def v2_files_request(files: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a V2 infer request with `files` as the BYTES tensor `image_files` in
    Triton's binary data extension (each element a 4-byte little-endian length and the bytes)."""
    raw = b"".join(struct.pack("<I", len(data)) + data for data in files)
    header = json.dumps(
        {"inputs": [{"name": "image_files", "datatype": "BYTES", "shape": [len(files)], "parameters": {"binary_data_size": len(raw)}}]}
    ).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}


def metric_samples(client: httpx.Client) -> dict[tuple[str, tuple], float]:
    """Every sample of GET /metrics: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
    }


def metric_delta(before: dict, after: dict, name: str, **labels) -> float:
    """How much one sample grew between two `metric_samples` readings."""
    key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
    return after.get(key, 0) - before.get(key, 0)
