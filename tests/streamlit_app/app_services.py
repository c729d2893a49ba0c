"""Start the app's real neighbours (serving, `streamlit run`) as background services for tests."""

from pathlib import Path

import pytest
from tests.helpers import VENV_BIN, Service, free_port, wait_for_http

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING_TOKEN = "app-monitoring-token"
SERVING_LIMITS = {"MAX_UPLOAD_MB": "3", "MAX_FILES": "4"}
"""The test serving's upload limits: other than serving's defaults (10 MB, 64 files)."""


def start_service(args: list[str], log_path: Path, health_url: str, env: dict, timeout: float) -> Service:
    service = Service(args, log_path, env=env, cwd=REPO_ROOT)
    try:
        wait_for_http(health_url, timeout=timeout, process=service.process)
    except (TimeoutError, RuntimeError) as error:
        service.stop()
        pytest.fail(f"{error}\n--- {log_path} ---\n{service.log_tail()}")
    return service


def start_serving(tmp_dir: Path, env: dict, ready: bool) -> tuple[Service, str]:
    """uvicorn serving.app:app on a free port; waits for /ready when `ready`, else for /health."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = start_service(
        [str(VENV_BIN / "uvicorn"), "serving.app:app", "--host", "127.0.0.1", "--port", str(port)],
        tmp_dir / f"serving-{port}.log",
        f"{url}/ready" if ready else f"{url}/health",
        env={"SERVING_ADMIN_TOKEN": "test-token", "SKIN_CANCER_STATE": str(tmp_dir / f"state-{port}"), **env},
        timeout=240,
    )
    return service, url


def start_streamlit(serving: str, log_path: Path) -> tuple[Service, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = start_service(
        [
            str(VENV_BIN / "streamlit"),
            "run",
            "streamlit_app/app.py",
            "--server.address=127.0.0.1",
            f"--server.port={port}",
            "--server.headless=true",
            "--server.fileWatcherType=none",
            "--browser.gatherUsageStats=false",
        ],
        log_path,
        f"{url}/_stcore/health",
        env={"SERVING_URL": serving, "SERVING_MONITORING_TOKEN": MONITORING_TOKEN},
        timeout=60,
    )
    return service, url
