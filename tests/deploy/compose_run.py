"""`make compose-test`: the Docker Compose deployment end to end, on a real Docker engine.

Starts an engine when none answers, builds the stand-ins for the public images
(deploy/docker/local-images.sh) and the four project images from their Dockerfiles, brings up the
stack of deploy/docker/docker-compose.yaml with a small real subset of the data set, materializes
the smoke graph through the webserver's GraphQL API (each run a container of DockerRunLauncher,
each step a container of docker_executor), checks that serving and the app reach neither the Docker
API nor MLflow's writes, that the sensors redeploy serving through the Docker target while 8 clients
post images, that today's `production_predictions` counts every one of those predictions, that the
app answers in Chromium, and that `docker-compose down` and `up` keep every run, model version and
stored asset. Prints the figures and removes everything it started, also when a check fails.

Two local adaptations, both because this machine has Debian's Docker 20.10 and Compose 1.29 and
no image registry: the Dockerfiles are built without their `# syntax=docker/dockerfile:1` line (the
frontend image cannot be pulled; the engine's built-in frontend reads the rest as is), and Compose
reads a copy of the Compose file without its top-level `name:` (Compose 1.29 predates it; the
project name is passed with `-p` instead).
"""

import json
import os
from datetime import datetime, timezone
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import mlflow
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from skin_cancer_contract.registry import CHAMPION_ALIAS, REGISTERED_MODEL_NAME
from tests.browser import chromium
from tests.helpers import copy_version
from tests.serving.serving_support import DATASET
from tests.skin_cancer_assets.redeploy_support import DEPLOY_JOB, PostingClients, wait_for
from tests.streamlit_app.test_app_browser import TIMEOUT_MS, upload_and_predict

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "deploy" / "docker"
PROJECT = "skin-cancer"
DOCKER = "/usr/bin/docker"
"""Debian's docker.io CLI: it builds with BuildKit itself (a newer CLI needs the buildx plugin)."""
ENGINE_ROOT = Path("/var/tmp/skin-cancer-compose-test")
"""Where an engine this script starts keeps its data: outside the repository, and kept between
runs so the next one reuses the images and their layers (`rm -rf` it to start from nothing)."""
IMAGES = {  # service image -> Dockerfile, as in docker-compose.yaml
    "skin-cancer-code": "deploy/docker/Dockerfile.code",
    "skin-cancer-dagster": "deploy/docker/Dockerfile.dagster",
    "skin-cancer-serving": "serving/Dockerfile",
    "skin-cancer-streamlit": "streamlit_app/Dockerfile",
    "skin-cancer-mlflow": "deploy/docker/Dockerfile.mlflow",
}
LONG_RUNNING = ["postgres", "minio", "docker-proxy", "mlflow", "code-location", "deploy-location", "webserver", "daemon", "serving", "streamlit"]
IMAGES_PER_CLASS = 24
"""Per split and class: the smoke profile's cap, so its runs read every image uploaded."""
DAGSTER_URL, MLFLOW_URL, SERVING_URL, APP_URL = (
    "http://127.0.0.1:3000", "http://127.0.0.1:5000", "http://127.0.0.1:8000", "http://127.0.0.1:8501",
)
LOG_FLUSHED_S = 15
"""Serving writes its prediction log every 5 s (PREDICTION_LOG_FLUSH_S): three rounds have passed after this."""
MLFLOW_ADMIN = "admin"
FIGURES: dict[str, str] = {}


def say(message: str) -> None:
    print(f"[compose-test {time.strftime('%H:%M:%S')}] {message}", flush=True)


def sh(*command: str, capture: bool = False, **kwargs) -> str:
    """Run a command; its output goes to ours unless captured. Fails with the command on error."""
    result = subprocess.run(command, check=False, text=True, capture_output=capture, **kwargs)
    if result.returncode != 0:
        detail = f"\n{result.stdout}\n{result.stderr}" if capture else ""
        raise RuntimeError(f"`{' '.join(command)}` exited {result.returncode}{detail}")
    return result.stdout if capture else ""


def engine_answers() -> bool:
    return subprocess.run([DOCKER, "info"], capture_output=True).returncode == 0


@contextmanager
def docker_engine():
    """The running engine, or one started here (dockerd as root, its data under ENGINE_ROOT) and stopped at the end."""
    if engine_answers():
        say("using the Docker engine that is running")
        yield
        return
    ENGINE_ROOT.mkdir(parents=True, exist_ok=True)
    log = (ENGINE_ROOT / "dockerd.log").open("a")
    dockerd = subprocess.Popen(
        ["dockerd", f"--data-root={ENGINE_ROOT / 'data'}", f"--exec-root={ENGINE_ROOT / 'exec'}",
         f"--pidfile={ENGINE_ROOT / 'dockerd.pid'}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: dockerd.poll() is not None or engine_answers(), "dockerd answered", 120)
        if dockerd.poll() is not None:
            raise RuntimeError(f"dockerd exited {dockerd.returncode}; see {ENGINE_ROOT / 'dockerd.log'}")
        driver = sh(DOCKER, "info", "--format", "{{.Driver}}", capture=True).strip()
        say(f"started dockerd (storage driver {driver}, data in {ENGINE_ROOT / 'data'})")
        yield
    finally:
        dockerd.send_signal(signal.SIGTERM)
        dockerd.wait(timeout=120)
        log.close()
        say("stopped dockerd")


def image_size_mb(image: str) -> int:
    return int(sh(DOCKER, "image", "inspect", "--format", "{{.Size}}", image, capture=True)) // 1_000_000


def build_project_images() -> None:
    """Each image from its real Dockerfile, build context the repository root, as Compose builds it."""
    for image, dockerfile in IMAGES.items():
        started = time.monotonic()
        text = "".join(line for line in (REPO / dockerfile).read_text().splitlines(keepends=True) if not line.startswith("# syntax="))
        sh(DOCKER, "build", "--quiet", "-f", "-", "-t", f"{image}:latest", str(REPO), input=text,
           env={**os.environ, "DOCKER_BUILDKIT": "1"}, capture=True)
        seconds = time.monotonic() - started
        FIGURES[f"build {image}"] = f"{seconds:.0f} s, {image_size_mb(f'{image}:latest')} MB"
        say(f"built {image}: {FIGURES[f'build {image}']}")


def seed_subset(work: Path) -> Path:
    """The first IMAGES_PER_CLASS real images of each split and class, for minio-init to upload."""
    seed = work / "seed"
    for split in ("train", "test"):
        for label in ("benign", "malignant"):
            target = seed / split / label
            target.mkdir(parents=True)
            for image in sorted((DATASET / split / label).glob("*.jpg"))[:IMAGES_PER_CLASS]:
                shutil.copy(image, target)
    return seed


class Stack:
    """docker-compose over deploy/docker with generated secrets and the smoke profile."""

    def __init__(self, work: Path, seed: Path):
        self.env_file = work / "compose.env"
        self.mlflow_admin_password = secrets.token_hex(12)
        self.env_file.write_text(
            f"POSTGRES_PASSWORD={secrets.token_hex(12)}\nAWS_ACCESS_KEY_ID=skin-cancer\n"
            f"AWS_SECRET_ACCESS_KEY={secrets.token_hex(12)}\nSERVING_ADMIN_TOKEN={secrets.token_hex(24)}\n"
            f"MLFLOW_ADMIN_USERNAME={MLFLOW_ADMIN}\nMLFLOW_ADMIN_PASSWORD={self.mlflow_admin_password}\n"
            f"MLFLOW_READER_PASSWORD={secrets.token_hex(12)}\nMLFLOW_SECRET_KEY={secrets.token_hex(24)}\n"
            f"SKIN_CANCER_PROFILE=smoke\nMLFLOW_EXPERIMENT_NAME=compose_test\nSKIN_CANCER_SEED_DATA={seed}\n"
        )
        self.env_file.chmod(0o600)
        # Compose 1.29 refuses the top-level `name:`; the copy sits next to the original so every
        # relative path in it means the same.
        self.compose_file = COMPOSE_DIR / ".compose-test.yaml"
        original = (COMPOSE_DIR / "docker-compose.yaml").read_text().splitlines(keepends=True)
        self.compose_file.write_text("".join(line for line in original if not line.startswith(f"name: {PROJECT}")))

    def compose(self, *args: str, capture: bool = False) -> str:
        # Compose prefers the shell's variables to the env file's: drop those the file sets.
        settings = {line.split("=", 1)[0] for line in self.env_file.read_text().splitlines()}
        env = {name: value for name, value in os.environ.items() if name not in settings}
        return sh("docker-compose", "-f", str(self.compose_file), "-p", PROJECT, "--env-file", str(self.env_file),
                  *args, capture=capture, env=env)

    def up(self) -> float:
        """`up -d` until every long-running service is healthy (or running, where it has no health check); seconds."""
        started = time.monotonic()
        try:
            self.compose("up", "-d", "--no-build", "--quiet-pull")
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n{self.diagnostics()}") from error
        wait_for(self.all_healthy, "every service healthy", 600, self.diagnostics)
        return time.monotonic() - started

    def states(self) -> dict[str, str]:
        states = {}
        for service in LONG_RUNNING:
            container = self.compose("ps", "-q", service, capture=True).strip()
            states[service] = container and sh(
                DOCKER, "inspect", "--format", "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}",
                container, capture=True).strip()
        return states

    def all_healthy(self) -> bool:
        return all(state in ("healthy", "running") for state in self.states().values())

    def diagnostics(self) -> str:
        return f"states: {self.states()}\n" + self.compose("logs", "--tail", "30", capture=True)[-8000:]

    def exec_python(self, service: str, code: str) -> str:
        return self.compose("exec", "-T", service, "python", "-c", code, capture=True)

    def down(self, *args: str) -> None:
        self.compose("down", *args)


def dagster_containers() -> tuple[list[str], list[str]]:
    """The containers DockerRunLauncher (label dagster/run_id) and docker_executor (dagster-step-*) made."""
    runs = sh(DOCKER, "ps", "-aq", "--filter", "label=dagster/run_id", capture=True).split()
    steps = sh(DOCKER, "ps", "-aq", "--filter", "name=dagster-step-", capture=True).split()
    return runs, steps


def remove_dagster_containers() -> None:
    runs, steps = dagster_containers()
    if runs or steps:
        sh(DOCKER, "rm", "-f", *runs, *steps, capture=True)


GRAPHQL_RUNS = """query Runs($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs {
  results { runId jobName status tags { key value } } } } }"""
GRAPHQL_ASSETS = """{ assetsOrError { ... on AssetConnection { nodes { key { path }
  assetMaterializations(limit: 1) { runId } } } } }"""


def graphql(query: str, variables: dict | None = None) -> dict:
    response = httpx.post(f"{DAGSTER_URL}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


def runs(job: str | None = None) -> list[dict]:
    variables = {"filter": {"pipelineName": job}} if job else {}
    return graphql(GRAPHQL_RUNS, variables)["runsOrError"]["results"]


def materialized_assets() -> dict[str, str]:
    nodes = graphql(GRAPHQL_ASSETS)["assetsOrError"]["nodes"]
    return {"/".join(n["key"]["path"]): n["assetMaterializations"][0]["runId"] for n in nodes if n["assetMaterializations"]}


def run_finished(client: DagsterGraphQLClient, run_id: str) -> str | None:
    """The run's final status, or None while it is not finished."""
    try:
        status = client.get_run_status(run_id).value
    except DagsterGraphQLClientError:
        return None
    return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None


def materialize_smoke_graph(stack: Stack) -> str:
    """The job train_and_elect, launched through the webserver as the UI does; returns the run id."""
    client = DagsterGraphQLClient("127.0.0.1", port_number=3000)
    started = time.monotonic()
    run_id = client.submit_job_execution("train_and_elect", repository_location_name="skin_cancer")
    say(f"launched train_and_elect: run {run_id}")

    status = wait_for(lambda: run_finished(client, run_id), f"run {run_id} finished", 1800, stack.diagnostics)
    FIGURES["smoke graph in containers"] = f"{time.monotonic() - started:.0f} s (launch to RUN_SUCCESS)"
    if status != "SUCCESS":
        raise AssertionError(f"run {run_id} ended {status}\n{stack.diagnostics()}")
    run_containers, step_containers = dagster_containers()
    if not run_containers or len(step_containers) < 2:
        raise AssertionError(f"expected a run container and a container per step, found {len(run_containers)} and {len(step_containers)}")
    say(f"run {run_id} succeeded: {len(run_containers)} run container(s), {len(step_containers)} step containers")
    return run_id


def served_version() -> str | None:
    try:
        return httpx.get(f"{SERVING_URL}/model", timeout=10).json().get("version")
    except (httpx.HTTPError, ValueError):
        return None


def champion_version(client: mlflow.MlflowClient) -> str:
    return str(client.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS).version)


def redeploy_under_load(stack: Stack, client: mlflow.MlflowClient) -> int:
    """Promote a copy of the champion as an election does while 8 clients post images: move the
    alias and record a `champion_model` materialization that says `promoted` (from inside the
    daemon's container, on the stack's instance). The deploy location's asset sensor deploys it to
    every serving container found by the Docker target; no request may fail. The time from the
    materialization to every answer from the new version is the figure bench/redeploy.py takes
    outside containers (target 15 s). Returns how many predictions the clients got."""
    champion = champion_version(client)
    wait_for(lambda: served_version() == champion, f"serving reports the elected champion {champion}", 600, stack.diagnostics)
    deploys = runs(DEPLOY_JOB)
    say(f"serving answers with champion {champion}, deployed by {len(deploys)} deploy run(s) "
        f"({', '.join(sorted({tag['value'] for run in deploys for tag in run['tags'] if tag['key'] == 'dagster/sensor_name'}))})")
    with PostingClients(SERVING_URL, count=8) as clients:
        time.sleep(5)
        new = str(copy_version(client, client.get_model_version(REGISTERED_MODEL_NAME, champion)).version)
        client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, new)
        moved = float(stack.exec_python("daemon", REPORT_PROMOTION.format(version=new)).strip())
        say(f"moved {CHAMPION_ALIAS} to version {new} and recorded its promotion; waiting for the sensor's deploy")
        since = wait_for(lambda: clients.every_answer_since(new), f"every answer from version {new}", 600, stack.diagnostics)
        time.sleep(5)
    new_deploys = [run for run in runs(DEPLOY_JOB) if run["runId"] not in {d["runId"] for d in deploys}]
    if not new_deploys or any(run["status"] != "SUCCESS" for run in new_deploys):
        raise AssertionError(f"deploy runs after the alias move: {new_deploys}")
    if clients.failed:
        raise AssertionError(f"{len(clients.failed)} of {len(clients.all_answers)} requests failed: {clients.failed[:3]}")
    FIGURES["redeploy"] = (f"{since - moved:.1f} s from the champion's materialization to every answer from the new version "
                           f"({', '.join(sorted({tag['value'] for run in new_deploys for tag in run['tags'] if tag['key'] == 'dagster/sensor_name'}))}); "
                           f"{len(clients.all_answers)} requests by 8 clients, 0 failed")
    say(f"redeployed by {new_deploys[0]['runId']}: {FIGURES['redeploy']}")
    return len(clients.all_answers)


REPORT_PROMOTION = """import dagster as dg
with dg.DagsterInstance.get() as instance:
    instance.report_runless_asset_event(dg.AssetMaterialization("champion_model", metadata={{"decision": "promoted", "champion_version": {version}}}))
    print(instance.get_latest_materialization_event(dg.AssetKey("champion_model")).timestamp)"""
"""What an election that promoted `version` records, as redeploy_support.promote records it in the suites."""

REACH = """import socket
try:
    socket.create_connection(({host!r}, {port}), timeout=5).close()
    print("reached")
except OSError as error:
    print(f"not reached: {{error}}")"""

MOVE_ALIAS = """import mlflow
try:
    mlflow.MlflowClient().set_registered_model_alias({model!r}, {alias!r}, {version!r})
    print("moved")
except mlflow.exceptions.MlflowException as error:
    print(f"refused: {{error}}")"""


def reaches(stack: Stack, service: str, host: str, port: int) -> bool:
    return stack.exec_python(service, REACH.format(host=host, port=port)).strip() == "reached"


def least_privilege(stack: Stack, client: mlflow.MlflowClient) -> None:
    """What serving (which parses untrusted uploads) and the app may reach, tried from inside them:
    not the Docker API, Postgres or the webserver, and MLflow only as a reader; the deploy location
    reaches the Docker API, so a refusal is the network's, not a stopped proxy's."""
    if not reaches(stack, "deploy-location", "docker-proxy", 2375):
        raise AssertionError("the deploy location cannot reach docker-proxy: the check below would prove nothing")
    for service, host, port in [("serving", "docker-proxy", 2375), ("serving", "postgres", 5432), ("serving", "webserver", 3000),
                                ("streamlit", "docker-proxy", 2375), ("streamlit", "mlflow", 5000)]:
        if reaches(stack, service, host, port):
            raise AssertionError(f"{service} reaches {host}:{port}")
    answer = stack.exec_python("serving", MOVE_ALIAS.format(model=REGISTERED_MODEL_NAME, alias=CHAMPION_ALIAS,
                                                            version=champion_version(client))).strip()
    if not answer.startswith("refused: ") or "403" not in answer:  # MLflow's answer to a user without the permission
        raise AssertionError(f"serving's MLflow user tried to move {CHAMPION_ALIAS}: {answer}")
    say("serving and the app reach neither docker-proxy, Postgres nor the webserver; serving's MLflow user cannot move the alias")


GRAPHQL_PARTITION_METADATA = """query Metadata($asset: [String!]!, $partition: String!) {
  assetOrError(assetKey: {path: $asset}) { ... on Asset { assetMaterializations(partitions: [$partition], limit: 1) {
  runId metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }"""


def monitoring_counts_the_load(stack: Stack, predictions: int) -> None:
    """Today's partition of the monitoring job, launched as the UI does, must count every prediction
    the clients got, read from the log serving wrote to the bucket, with nothing dropped or unreadable."""
    time.sleep(LOG_FLUSHED_S)
    day = datetime.now(timezone.utc).date().isoformat()
    client = DagsterGraphQLClient("127.0.0.1", port_number=3000)
    run_id = client.submit_job_execution("monitor_production", repository_location_name="skin_cancer", tags={"dagster/partition": day})
    status = wait_for(lambda: run_finished(client, run_id), f"monitoring run {run_id} finished", 900, stack.diagnostics)
    if status != "SUCCESS":
        raise AssertionError(f"monitoring run {run_id} ended {status}\n{stack.diagnostics()}")
    (materialization,) = graphql(GRAPHQL_PARTITION_METADATA, {"asset": ["production_predictions"], "partition": day})[
        "assetOrError"]["assetMaterializations"]
    figures = {entry["label"]: entry.get("intValue") for entry in materialization["metadataEntries"]}
    counted = (figures["count"], figures["dropped_records"], figures["malformed_lines"])
    if counted != (predictions, 0, 0):
        raise AssertionError(f"production_predictions {day} counted {counted} (count, dropped, malformed); the clients got {predictions}")
    FIGURES["monitoring"] = f"production_predictions {day} counted all {predictions} predictions of the load (0 dropped, 0 malformed)"
    say(FIGURES["monitoring"])


def app_answers_in_chromium(image: Path, version: str) -> None:
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page()
        upload_and_predict(page, APP_URL, image)
        expect(page.get_by_test_id("stMain").get_by_text(f"version {version}")).to_be_visible(timeout=TIMEOUT_MS)
    say(f"the app answered in Chromium with version {version}")


STORED_OBJECTS = """import boto3, os, json
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
pages = s3.get_paginator("list_objects_v2").paginate(Bucket=os.environ["AWS_BUCKET"])
print(json.dumps(sorted((o["Key"], o["Size"]) for page in pages for o in page.get("Contents", []))))"""


def persisted_state(stack: Stack, client: mlflow.MlflowClient) -> dict:
    """What a restart must keep: runs, registered versions, the latest materializations and every stored object."""
    objects = json.loads(stack.exec_python("code-location", STORED_OBJECTS))
    return {
        "runs": sorted((run["runId"], run["status"]) for run in runs()),
        "model versions": sorted(v.version for v in client.search_model_versions(f"name='{REGISTERED_MODEL_NAME}'")),
        "materializations": materialized_assets(),
        "stored objects": [tuple(o) for o in objects],
    }


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="skin-cancer-compose-", dir="/var/tmp"))
    started = time.monotonic()
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        cleanup.enter_context(docker_engine())
        sh(str(COMPOSE_DIR / "local-images.sh"), env={**os.environ, "DOCKER": DOCKER})
        build_project_images()
        stack = Stack(work, seed_subset(work))
        cleanup.callback(stack.compose_file.unlink, missing_ok=True)
        cleanup.callback(stack.down, "-v", "--remove-orphans")
        cleanup.callback(remove_dagster_containers)
        FIGURES["stack start"] = f"{stack.up():.0f} s (up -d to every service healthy, fresh volumes)"
        say(f"stack up: {FIGURES['stack start']}")

        run_id = materialize_smoke_graph(stack)
        os.environ |= {"MLFLOW_TRACKING_USERNAME": MLFLOW_ADMIN, "MLFLOW_TRACKING_PASSWORD": stack.mlflow_admin_password}
        client = mlflow.MlflowClient(MLFLOW_URL)
        least_privilege(stack, client)
        monitoring_counts_the_load(stack, redeploy_under_load(stack, client))
        app_answers_in_chromium(sorted((DATASET / "test" / "benign").glob("*.jpg"))[0], champion_version(client))

        time.sleep(LOG_FLUSHED_S)  # the app's prediction is in the bucket before its objects are listed
        before = persisted_state(stack, client)
        stack.down()
        FIGURES["restart"] = f"{stack.up():.0f} s (up -d after down, volumes kept)"
        after = persisted_state(stack, client)
        if after != before:
            lost = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
            raise AssertionError(f"down and up changed the stored state: {lost}")
        if run_id not in {run for run, _ in after["runs"]}:
            raise AssertionError(f"run {run_id} is missing after the restart")
        say(f"down and up kept {len(after['runs'])} runs, {len(after['model versions'])} model versions, "
            f"{len(after['materializations'])} materialized assets and {len(after['stored objects'])} stored objects")
    FIGURES["whole check"] = f"{time.monotonic() - started:.0f} s"
    print("\ncompose-test passed. Figures (CPU times taken on a loaded, shared 2-core machine):")
    for name, value in FIGURES.items():
        print(f"  {name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
