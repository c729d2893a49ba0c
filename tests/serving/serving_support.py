"""What the serving tests share: a real uvicorn process, test settings, image encoding."""

import io
import os
import time
from pathlib import Path

import httpx
from tests.helpers import VENV_BIN, Service, free_port, wait_for_http
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASET = Path(os.environ.get("SKIN_CANCER_DATA", REPO_ROOT.parent / "shared" / "datasets" / "skin-cancer"))
ADMIN_TOKEN = "serving-test-token"
MAX_UPLOAD_MB = 2


class Serving:
    """`uvicorn serving.app:app` on a free loopback port, with its log kept for failures."""

    def __init__(self, work: Path, env: dict[str, str], port: int | None = None):
        port = port or free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.service = Service(
            [str(VENV_BIN / "uvicorn"), "serving.app:app", "--host", "127.0.0.1", "--port", str(port)],
            log_path=work / "serving.log",
            env=env,
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

    def stop(self) -> None:
        self.service.stop()


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()
