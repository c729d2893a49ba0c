"""What the redeploy test and bench/redeploy.py share: clients posting real images throughout,
a promotion as the sensors see it, and the sensors' ticks and the deploy runs of an instance."""

import itertools
import threading
import time
from dataclasses import dataclass

import dagster as dg
import httpx
import mlflow

from skin_cancer_contract.api import UPLOAD_FIELD
from skin_cancer_contract.registry import CHAMPION_ALIAS, REGISTERED_MODEL_NAME
from tests.serving.serving_support import DATASET

DEPLOY_JOB = "deploy_champion"
ASSET_SENSOR = "redeploy_on_new_champion"
CONVERGENCE_SENSOR = "serving_follows_the_alias"
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@dataclass(frozen=True)
class Answer:
    started: float
    ended: float
    status: int | None
    """HTTP status; None when the request got no answer."""
    version: str | None
    error: str | None


class PostingClients:
    """`count` threads, each posting one real image after another to serving's `/predict` until
    stopped; every answer is kept with its wall-clock start and end."""

    def __init__(self, url: str, count: int = 8):
        images = sorted((DATASET / "test" / "benign").glob("*.jpg"))[:count] + sorted((DATASET / "test" / "malignant").glob("*.jpg"))[:count]
        self.url, self.images = url, [(path.name, path.read_bytes()) for path in images]
        self.answers: list[list[Answer]] = [[] for _ in range(count)]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._post, args=(n,), daemon=True) for n in range(count)]

    def __enter__(self) -> "PostingClients":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _post(self, number: int) -> None:
        images = itertools.cycle(self.images[number:] + self.images[:number])
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self._stop.is_set():
                name, data = next(images)
                started = time.time()
                try:
                    response = http.post("/predict", files={UPLOAD_FIELD: (name, data, "image/jpeg")})
                    body = response.json()
                    version = body["model"]["version"] if response.status_code == 200 else None
                    answer = Answer(started, time.time(), response.status_code, version, None if version else str(body)[:300])
                except (httpx.HTTPError, ValueError) as error:
                    answer = Answer(started, time.time(), None, None, f"{type(error).__name__}: {error}")
                self.answers[number].append(answer)

    @property
    def all_answers(self) -> list[Answer]:
        return [answer for answers in self.answers for answer in answers]

    @property
    def failed(self) -> list[Answer]:
        return [answer for answer in self.all_answers if answer.status != 200]

    def every_answer_since(self, version: str) -> float | None:
        """The wall-clock time after which every request started was answered by `version`."""
        others = [answer.started for answer in self.all_answers if answer.version != version]
        ours = [answer.started for answer in self.all_answers if answer.version == version and answer.started > max(others, default=0)]
        return min(ours) if ours else None


def register_copy(client: mlflow.MlflowClient, version: str) -> str:
    """A new registered version holding the same model as `version` (a stand-in for a retrained one)."""
    source = client.get_model_version(REGISTERED_MODEL_NAME, version)
    # A version made by log_model points at its logged model (`models:/m-...`), which the copy must name too.
    logged_model = source.source.removeprefix("models:/") if source.source.startswith("models:/m-") else None
    created = client.create_model_version(
        REGISTERED_MODEL_NAME, source=source.source, run_id=source.run_id, tags=source.tags,
        model_id=source.model_id or logged_model,
    )
    return str(created.version)


def promote(instance: dg.DagsterInstance, client: mlflow.MlflowClient, version: str) -> float:
    """Move the alias to `version` and record the champion materialization an election that
    promoted it records (decision `promoted`); returns the materialization's timestamp."""
    client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, version)
    instance.report_runless_asset_event(
        dg.AssetMaterialization("champion_model", metadata={"decision": "promoted", "champion_version": int(version)})
    )
    return latest_champion_timestamp(instance)


def latest_champion_timestamp(instance: dg.DagsterInstance) -> float:
    return instance.get_latest_materialization_event(dg.AssetKey("champion_model")).timestamp


def deploy_runs(instance: dg.DagsterInstance, sensor: str | None = None) -> list[dg.DagsterRun]:
    """The deploy runs, newest first; only those `sensor` launched when it is given."""
    tags = {"dagster/sensor_name": sensor} if sensor else {}
    return list(instance.get_runs(dg.RunsFilter(job_name=DEPLOY_JOB, tags=tags)))


def ticks(instance: dg.DagsterInstance, sensor: str, after: float = 0.0) -> list:
    """The sensor's finished ticks after `after`, newest first."""
    from dagster._core.scheduler.instigation import TickStatus

    states = [state for state in instance.all_instigator_state() if state.instigator_name == sensor]
    found = [
        tick
        for state in states
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id, after=after)
        if tick.status != TickStatus.STARTED
    ]
    return sorted(found, key=lambda tick: tick.timestamp, reverse=True)


def wait_for(condition, what: str, timeout: float, diagnostics=lambda: "") -> object:
    """Poll `condition()` once a second until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout:.0f}s\n{diagnostics()}")


def wait_for_run(instance: dg.DagsterInstance, run_id: str, timeout: float, diagnostics=lambda: "") -> dg.DagsterRun:
    return wait_for(
        lambda: (run := instance.get_run_by_id(run_id)) and run.status in FINISHED and run,
        f"deploy run {run_id} finished", timeout, diagnostics,
    )
