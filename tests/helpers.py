"""Small helpers the suites share: free ports, background services, waiting for HTTP, an MLflow
server and copies of its registered versions, a Dagster webserver and daemon over one instance."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers below 500; fail early if `process` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with code {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def error_chain(error: BaseException) -> str:
    """Every message in an exception's chain: Dagster wraps user errors in its own."""
    messages = []
    while error is not None:
        messages.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    return "\n".join(messages)


class Service:
    """A background process with its output in a log file, stopped with its children."""

    def __init__(self, args: list[str], log_path: Path, env: dict | None = None, cwd: Path | None = None, append: bool = False):
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab" if append else "wb")
        self.process = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def start_mlflow_server(root: Path) -> tuple["Service", str]:
    """A real `mlflow server` on loopback, sqlite backend and local artifacts under `root`; (service, URI)."""
    port = free_port()
    service = Service(
        [
            str(VENV_BIN / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        root / "mlflow.log",
        # The job runner's worker processes (GenAI features) only slow this machine down.
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{uri}/health", timeout=180, process=service.process)
    except Exception:
        print(service.log_tail())
        service.stop()
        raise
    return service, uri


def copy_version(client, version, name: str | None = None, tags: dict[str, str] | None = None):
    """A new registered version holding the same model as `version` (an MLflow ModelVersion): a
    stand-in for a retrained one, under `name` (default: the same registered model), with
    `version`'s tags updated by `tags`. Returns the new ModelVersion.

    A version made by log_model points at its logged model (`models:/m-...`), which the copy must
    name too; a folder or `runs:/` source has none.
    """
    logged_model = version.source.removeprefix("models:/") if version.source.startswith("models:/m-") else None
    return client.create_model_version(
        name or version.name,
        source=version.source,
        run_id=version.run_id,
        tags={**version.tags, **(tags or {})},
        model_id=version.model_id or logged_model,
    )


def create_instance_storage(home: Path) -> None:
    """Create the instance's storage (its SQLite schemas) once, from this process.

    A `dagster-daemon` and a `dagster-webserver` started together on a fresh instance race to
    create it; the loser exits ("table alembic_version already exists").
    """
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)):
        pass


class DagsterProcesses:
    """A `dagster-daemon` and a `dagster-webserver` over the instance in `home` (the repository's
    dagster.yaml unless `home` has one), serving the repository's workspace.yaml, logs in `logs`."""

    def __init__(self, home: Path, logs: Path, env: dict):
        self.home, self.logs, self.workspace = home, logs, str(REPO / "workspace.yaml")
        self.env = {**env, "DAGSTER_HOME": str(home)}
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "dagster.yaml").exists():
            shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        create_instance_storage(home)
        self.url = f"http://127.0.0.1:{free_port()}"
        self.daemon = self.start_daemon()
        self.webserver = Service(
            [str(VENV_BIN / "dagster-webserver"), "-w", self.workspace, "-h", "127.0.0.1", "-p", self.url.rsplit(":", 1)[1]],
            logs / "webserver.log",
            env=self.env,
            cwd=REPO,
        )

    def start_daemon(self) -> Service:
        """Start (again) the daemon: sensors, the run queue; its log goes on in the same file."""
        self.daemon = Service(
            [str(VENV_BIN / "dagster-daemon"), "run", "-w", self.workspace], self.logs / "daemon.log", env=self.env, cwd=REPO, append=True
        )
        return self.daemon

    def stop(self) -> None:
        for service in (self.webserver, self.daemon):
            service.stop()


@contextmanager
def start_dagster(home: Path, logs: Path, env: dict, timeout: float = 300) -> Iterator[DagsterProcesses]:
    """A webserver and a daemon over one instance whose storage exists before either starts;
    yields once the webserver answers, stops both afterwards."""
    processes = DagsterProcesses(home, logs, env)
    try:
        wait_for_http(f"{processes.url}/server_info", timeout=timeout, process=processes.webserver.process)
        yield processes
    finally:
        processes.stop()


def send_json(handler, status: int, body: dict) -> None:
    """Answer a stand-in server's request (an `http.server.BaseHTTPRequestHandler`) with JSON."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """`variables` set in this process's environment; what was there before is put back afterwards."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
