"""The deploy targets, for real where this machine allows: their failure paths (no Docker engine,
no cluster, serving or the registry unreachable) name what failed; the alias is read from a
real MLflow store; a waiting deploy follows the alias on a real serving; the Kubernetes rolling
restart speaks the API's protocol (checked against a small stand-in API server, as no cluster
runs here)."""

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mlflow
import pytest

from resources.deploy import (
    RESTARTED_AT,
    DeployError,
    DockerServingTarget,
    KubernetesServingTarget,
    LocalServingTarget,
    Rollout,
)
from skin_cancer_contract.registry import CHAMPION_ALIAS, REGISTERED_MODEL_NAME
from tests.helpers import free_port, send_json
from tests.serving.serving_support import ADMIN_TOKEN
from tests.skin_cancer_assets.pipeline import champion_alias_restored, champion_version
from tests.skin_cancer_assets.redeploy_support import register_copy, start_ready_serving
from tests.skin_cancer_assets.registry_proxy import FailingProxy

LOG = logging.getLogger("test_deploy")
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing answers there


def kubeconfig(tmp_path, server: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "current-context": "test",
    }))
    return str(path)


def test_an_unreachable_kubernetes_api_server_is_named(tmp_path):
    server = f"https://127.0.0.1:{free_port()}"
    target = KubernetesServingTarget(mlflow_tracking_uri=NOWHERE, kubeconfig=kubeconfig(tmp_path, server), namespace="ml")
    started = time.monotonic()
    with pytest.raises(DeployError, match=f"Kubernetes API server {server} is unreachable.*skin-cancer-serving in namespace ml"):
        target.roll_out()
    assert time.monotonic() - started < 30


def test_no_kubernetes_configuration_is_a_clear_error(tmp_path):
    target = KubernetesServingTarget(mlflow_tracking_uri=NOWHERE, kubeconfig=str(tmp_path / "missing"))
    with pytest.raises(DeployError, match="no Kubernetes API configuration"):
        target.roll_out()


@pytest.mark.parametrize("docker_host", ["tcp://127.0.0.1:{port}", "unix:///nonexistent/docker.sock"])
def test_an_unreachable_docker_api_is_named(docker_host):
    docker_host = docker_host.format(port=free_port())
    target = DockerServingTarget(mlflow_tracking_uri=NOWHERE, admin_token="token", docker_host=docker_host)
    with pytest.raises(DeployError, match=f"Docker API at {docker_host} is unreachable"):
        target.roll_out()


def test_an_unreachable_serving_is_named():
    target = LocalServingTarget(mlflow_tracking_uri=NOWHERE, admin_token="token", serving_url=NOWHERE)
    with pytest.raises(DeployError, match=f"serving at {NOWHERE}/admin/reload is unreachable"):
        target.roll_out()
    with pytest.raises(DeployError, match=f"serving at {NOWHERE} is unreachable"):
        target.served_version()


def test_an_unreachable_registry_is_named():
    target = LocalServingTarget(mlflow_tracking_uri=NOWHERE, admin_token="token")
    with pytest.raises(DeployError, match=f"MLflow tracking server {NOWHERE} .* is unreachable"):
        target.champion_version()


def test_a_tracking_server_behind_basic_auth_is_asked_with_the_credentials(mlflow_server):
    """MLflow's basic-auth app (on in the Compose stack) answers 401 to a call without them."""
    proxy = FailingProxy(mlflow_server, failing_path="/nothing-fails", credentials=("admin", "s3cret"))
    try:
        anonymous = LocalServingTarget(mlflow_tracking_uri=proxy.url, admin_token="token")
        with pytest.raises(DeployError, match="answered 401: You are not authenticated"):
            anonymous.champion_version()
        signed_in = anonymous.model_copy(update={"mlflow_username": "admin", "mlflow_password": "s3cret"})
        direct = LocalServingTarget(mlflow_tracking_uri=mlflow_server, admin_token="token")
        assert signed_in.champion_version() == direct.champion_version()
    finally:
        proxy.stop()


def test_the_champion_is_what_the_alias_names_and_none_without_one(tmp_path):
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    target = LocalServingTarget(mlflow_tracking_uri=tracking_uri, admin_token="token")
    assert target.champion_version() is None  # no registered model yet
    client = mlflow.MlflowClient(tracking_uri)
    client.create_registered_model(REGISTERED_MODEL_NAME)
    for _ in range(2):
        client.create_model_version(REGISTERED_MODEL_NAME, source=str(tmp_path))
    assert target.champion_version() is None  # versions, but no alias
    with pytest.raises(DeployError, match="nothing to deploy"):
        target.deploy(LOG)
    client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, "2")
    assert target.champion_version() == "2"


class KubernetesApi(BaseHTTPRequestHandler):
    """Answers the two calls of a rolling restart like an API server whose rollout takes two reads;
    keeps every request (method, path) and every patch (content type, body)."""

    requests: list[tuple[str, str]] = []
    patches: list[tuple[str, dict]] = []

    def do_PATCH(self):
        KubernetesApi.requests.append(("PATCH", self.path))
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        KubernetesApi.patches.append((self.headers["Content-Type"], body))
        send_json(self, 200, self._deployment(updated=0))

    def do_GET(self):
        KubernetesApi.requests.append(("GET", self.path))
        reads = sum(method == "GET" for method, _ in KubernetesApi.requests)
        send_json(self, 200, self._deployment(updated=1 if reads == 1 else 2))

    def _deployment(self, updated: int) -> dict:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "skin-cancer-serving", "namespace": "ml", "generation": 2},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "serving"}}, "template": {"metadata": {}}},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": updated, "availableReplicas": updated},
        }

    def log_message(self, *args):
        pass


@pytest.fixture
def kubernetes_api() -> str:
    """The stand-in API server on loopback, with nothing recorded yet; its URL."""
    KubernetesApi.requests, KubernetesApi.patches = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), KubernetesApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_the_rolling_restart_patches_the_pod_template_and_waits_for_every_replica(tmp_path, kubernetes_api):
    target = KubernetesServingTarget(
        mlflow_tracking_uri=NOWHERE, kubeconfig=kubeconfig(tmp_path, kubernetes_api), namespace="ml",
        serving_url="http://skin-cancer-serving:8000",
    )
    rollout = target.roll_out()
    deployment = "/apis/apps/v1/namespaces/ml/deployments/skin-cancer-serving"
    ((content_type, patch),) = KubernetesApi.patches
    assert content_type == "application/strategic-merge-patch+json"
    assert RESTARTED_AT in patch["spec"]["template"]["metadata"]["annotations"]
    reads = [path for method, path in KubernetesApi.requests if method == "GET"]
    assert len(reads) == 2, "the deploy went on before every replica was updated"
    assert KubernetesApi.requests == [("PATCH", deployment)] + [("GET", f"{deployment}/status")] * 2
    assert rollout.replica_urls == ["http://skin-cancer-serving:8000"] * 4
    assert "2 replicas" in rollout.action


@pytest.fixture
def versions(smoke_champion):
    """Two more registered versions of the smoke champion's model; the alias is put back afterwards."""
    client = mlflow.MlflowClient(smoke_champion["tracking_uri"])
    original = champion_version(client)
    with champion_alias_restored(client):
        yield client, original, [register_copy(client, original) for _ in range(2)]


@pytest.fixture
def serving(smoke_champion, tmp_path):
    server = start_ready_serving(tmp_path, smoke_champion["tracking_uri"])
    yield server
    server.stop()


def served(serving, version: str) -> None:
    serving.wait_until(lambda http: http.get("/model").json().get("version") == version, f"served version {version}", timeout=60)


@pytest.mark.slow
def test_a_waiting_deploy_follows_the_alias_and_accepts_what_it_names(versions, serving, smoke_champion):
    client, original, (newer, newest) = versions
    target = LocalServingTarget(
        serving_url=serving.url, mlflow_tracking_uri=smoke_champion["tracking_uri"], admin_token=ADMIN_TOKEN,
        timeout_seconds=60,
    )
    here = Rollout("nothing done", [serving.url])

    # Serving already reports a newer champion than the deploy asked for: a success, at once.
    client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, newest)
    target.roll_out()
    served(serving, newest)
    started = time.monotonic()
    assert target.wait_for_version(newer, here, LOG)["version"] == newest
    assert time.monotonic() - started < 10

    # The alias moved back (an operator's rollback) and nobody told serving: the waiting deploy
    # follows the alias and reloads serving onto it, instead of waiting for a version nobody serves.
    client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, original)
    assert target.wait_for_version(newer, here, LOG)["version"] == original
    assert target.served_version() == original

    # A whole deploy takes what the alias names when it starts.
    client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, newer)
    result = target.deploy(LOG)
    assert result["requested_version"] == newer and result["served"]["version"] == newer
