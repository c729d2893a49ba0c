"""A new champion reaches serving by itself: real webserver, daemon (sensor on), uvicorn and MLflow."""

import shutil
import time

import dagster as dg
import httpx
import mlflow
import pytest

from skin_cancer_contract.registry import REGISTERED_MODEL_NAME
from skin_cancer_contract.evaluation import split_digest
from skin_cancer_assets.model_zoo import ZOO
from tests.conftest import REPO
from tests.helpers import VENV_BIN, Service, free_port, wait_for_http
from tests.serving.serving_support import ADMIN_TOKEN, Serving
from tests.skin_cancer_assets.pipeline import materialize_graph, register_candidate

pytestmark = pytest.mark.slow


@pytest.fixture
def platform(smoke_champion, tmp_path, monkeypatch):
    """Serving with the smoke champion, and a Dagster webserver + daemon that deploy to it."""
    serving = Serving(
        tmp_path,
        {
            "MODEL_URI": smoke_champion["model_uri"],
            "MLFLOW_TRACKING_URI": smoke_champion["tracking_uri"],
            "SERVING_ADMIN_TOKEN": ADMIN_TOKEN,
        },
    )
    serving.wait_until(lambda client: client.get("/ready").status_code == 200, "became ready")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {
        "DAGSTER_HOME": str(home),
        "SKIN_CANCER_STATE": str(tmp_path / "state"),
        "MLFLOW_TRACKING_URI": smoke_champion["tracking_uri"],
        "MLFLOW_EXPERIMENT_NAME": "redeploy",
        "SERVING_URL": serving.url,
        "SERVING_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    workspace = str(REPO / "workspace.yaml")
    services = [
        Service([str(VENV_BIN / "dagster-daemon"), "run", "-w", workspace], tmp_path / "daemon.log", env=env, cwd=REPO),
        Service(
            [str(VENV_BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(port)],
            tmp_path / "webserver.log",
            env=env,
            cwd=REPO,
        ),
    ]
    try:
        wait_for_http(f"http://127.0.0.1:{port}/server_info", timeout=300, process=services[1].process)
        yield {"serving": serving, "home": home, "daemon": services[0]}
    finally:
        for service in services:
            service.stop()
        serving.stop()


def test_a_better_champion_is_served_without_any_action_by_hand(platform, smoke_champion, tmp_path, keep_champion_alias):
    instance = dg.DagsterInstance.local_temp(str(platform["home"]))
    client = mlflow.MlflowClient(smoke_champion["tracking_uri"])
    arrays = materialize_graph(platform["home"], selection=dg.AssetSelection.groups("data"), instance=instance)
    digest = split_digest(
        arrays.output_for_node("preprocessed_arrays", "test_images"),
        arrays.output_for_node("preprocessed_arrays", "test_labels"),
    )
    mlflow.set_tracking_uri(smoke_champion["tracking_uri"])
    model_folder = mlflow.artifacts.download_artifacts(smoke_champion["model_uri"], dst_path=str(tmp_path / "model"))
    better = register_candidate(client, "redeploy", model_folder, 0.99, digest)
    for spec in ZOO:
        instance.report_runless_asset_event(dg.AssetMaterialization(spec.name, metadata={"mlflow_model_version": int(better)}))

    result = materialize_graph(platform["home"], selection=dg.AssetSelection.assets("champion_model"), instance=instance)
    assert result.output_for_node("champion_model")["version"] == better
    elected = time.monotonic()

    served = platform["serving"].wait_until(
        lambda http: http.get("/model").json().get("version") == better, f"served version {better}", timeout=420
    )
    latency = time.monotonic() - elected
    print(f"redeploy latency: {latency:.1f}s from champion materialization to serving answering with v{better}")
    assert served
    answer = httpx.post(
        f"{platform['serving'].url}/predict",
        files={"file": ("lesion.jpg", next((REPO.parent / "shared/datasets/skin-cancer/test/benign").iterdir()).read_bytes())},
        timeout=60,
    ).json()
    assert answer["predictions"][0]["model_version"] == better

    deadline = time.monotonic() + 120  # the deploy run records the deployment in the lineage
    while time.monotonic() < deadline:
        event = instance.get_latest_materialization_event(dg.AssetKey("serving_deployment"))
        if event is not None:
            break
        time.sleep(1)
    assert event is not None, platform["daemon"].log_tail()
    assert event.asset_materialization.metadata["version"].value == int(better)
    time.sleep(12)  # two more sensor ticks: the same champion materialization deploys once
    deploys = instance.get_runs(filters=dg.RunsFilter(job_name="deploy_champion"))
    assert len(deploys) == 1
    assert deploys[0].status == dg.DagsterRunStatus.SUCCESS
