"""What the redeploy and retrain tests and bench/redeploy.py share: the platform (serving, a Dagster
webserver and daemon with both redeploy sensors on) and its bring-up, a champion a retrain beats,
clients posting real images throughout, a promotion as the sensors see it, and the sensors' ticks
and the deploy runs of an instance."""

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import mlflow

from skin_cancer_assets.election import PROMOTED
from skin_cancer_assets.deploy_location import deploy_champion, redeploy_on_new_champion, serving_follows_the_alias
from skin_cancer_contract.api import UPLOAD_FIELD
from skin_cancer_contract.registry import CHAMPION_ALIAS, CHAMPION_URI, REGISTERED_MODEL_NAME
from tests.helpers import DagsterProcesses, copy_version, environment, free_port, start_dagster
from tests.serving.serving_support import ADMIN_TOKEN, DATASET, Serving
from tests.skin_cancer_assets.pipeline import materialize_graph, register_candidate, validation_split_of

DEPLOY_JOB = deploy_champion.name
ASSET_SENSOR = redeploy_on_new_champion.name
CONVERGENCE_SENSOR = serving_follows_the_alias.name


def start_ready_serving(work: Path, tracking_uri: str, port: int | None = None) -> Serving:
    """Serving loading the champion from `tracking_uri` (admin token: the tests'), once `/ready` answers."""
    serving = Serving(work, {"MLFLOW_TRACKING_URI": tracking_uri, "SERVING_ADMIN_TOKEN": ADMIN_TOKEN}, port=port)
    try:
        serving.wait_until(lambda http: http.get("/ready").status_code == 200, "became ready")
    except AssertionError:
        serving.stop()
        raise
    return serving


class Platform:
    """Serving on a fixed port (so it can be stopped and started again at the same URL), a Dagster
    webserver and daemon that deploy to it, and the environment both run with (set in this
    process too while the platform is up: in-process materializations use the same storage). The
    retrain sensor is off unless `env` turns it on."""

    def __init__(self, root: Path, tracking_uri: str, env: dict[str, str] | None = None):
        self.root, self.tracking_uri = root, tracking_uri
        self.client = mlflow.MlflowClient(tracking_uri)
        self.serving_port, self.starts = free_port(), 0
        self.env = {
            "SKIN_CANCER_STATE": str(root / "state"),
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_EXPERIMENT_NAME": "redeploy",
            "SERVING_URL": f"http://127.0.0.1:{self.serving_port}",
            "SERVING_ADMIN_TOKEN": ADMIN_TOKEN,
            "SKIN_CANCER_RETRAIN_SECONDS": "off",
            **(env or {}),
        }
        self.serving: Serving | None = None
        self.dagster: DagsterProcesses | None = None
        self.instance: dg.DagsterInstance | None = None
        self.validation: dict | None = None
        """The platform's validation split (`validation_split_of`), once a test materialized the data group."""
        self.model_folder: str | None = None
        """A downloaded copy of the champion's model, for registering candidates."""

    def start_serving(self) -> Serving:
        self.starts += 1
        self.serving = start_ready_serving(self.root / f"serving-{self.starts}", self.tracking_uri, self.serving_port)
        return self.serving

    def served_version(self) -> str | None:
        return self.serving.wait_until(lambda http: http.get("/model").json().get("version") or None, "answered /model")

    def logs(self) -> str:
        return f"daemon log:\n{self.dagster.daemon.log_tail()}\nserving log:\n{self.serving.service.log_tail()}"


@contextmanager
def bring_up(
    root: Path,
    tracking_uri: str,
    before_serving: Callable[[Platform], None] = lambda platform: None,
    env: dict[str, str] | None = None,
) -> Iterator[Platform]:
    """The platform over a fresh instance (the repository's dagster.yaml and workspace), yielded
    once serving is ready and both redeploy sensors have ticked; `before_serving` runs first, in
    the platform's environment (to set up the champion serving starts on); `env` adds to it."""
    platform = Platform(root, tracking_uri, env)
    with environment(platform.env):
        before_serving(platform)
        platform.start_serving()
        try:
            with (
                start_dagster(root / "dagster_home", root, platform.env) as platform.dagster,
                dg.DagsterInstance.from_config(str(platform.dagster.home)) as platform.instance,
            ):
                instance = platform.instance
                wait_for(
                    lambda: ticks(instance, ASSET_SENSOR) and ticks(instance, CONVERGENCE_SENSOR),
                    "both sensors ticked", 300, platform.logs,
                )
                yield platform
        finally:
            platform.serving.stop()


def crown_a_beatable_champion(platform: Platform, skill: float = 0.0) -> None:
    """Start from a champion a better candidate can beat: the smoke model registered again with
    validation probabilities of `skill` (`synthetic_scores`) on this platform's validation split
    (the smoke model itself may score 1.0 on its few validation images). Serving starts on it, so
    no deploy is needed.

    The data group is materialized here, once, into the platform's storage, where elections read
    it; its validation split and the champion's model folder stay on the platform."""
    arrays = materialize_graph(platform.root / "arrays", selection=dg.AssetSelection.groups("data"))
    platform.validation = validation_split_of(arrays)
    mlflow.set_tracking_uri(platform.tracking_uri)
    platform.model_folder = mlflow.artifacts.download_artifacts(CHAMPION_URI, dst_path=str(platform.root / "model"))
    weak = register_candidate(platform.client, "redeploy", platform.model_folder, platform.validation, skill)
    platform.client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, weak["version"])


@dataclass(frozen=True)
class Answer:
    started: float
    status: int | None
    """HTTP status; None when the request got no answer."""
    version: str | None
    error: str | None


class PostingClients:
    """`count` threads, each posting one real image after another to serving's `/predict` until
    stopped; every answer is kept with its wall-clock start."""

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
                    answer = Answer(started, response.status_code, version, None if version else str(body)[:300])
                except (httpx.HTTPError, ValueError) as error:
                    answer = Answer(started, None, None, f"{type(error).__name__}: {error}")
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
    return str(copy_version(client, client.get_model_version(REGISTERED_MODEL_NAME, version)).version)


def promote(instance: dg.DagsterInstance, client: mlflow.MlflowClient, version: str) -> float:
    """Move the alias to `version` and record the champion materialization an election that
    promoted it records (decision PROMOTED); returns the materialization's timestamp."""
    client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, version)
    instance.report_runless_asset_event(
        dg.AssetMaterialization("champion_model", metadata={"decision": PROMOTED, "champion_version": int(version)})
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
        lambda: (run := instance.get_run_by_id(run_id)) and run.is_finished and run,
        f"run {run_id} finished", timeout, diagnostics,
    )
