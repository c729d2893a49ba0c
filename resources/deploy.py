"""Deploy targets: how serving comes to serve the version the registry's `champion` alias names.

A deploy converges on the alias, not on a version recorded earlier: it reads the alias, asks
serving to take it (`roll_out`), then waits until every address the rollout lists reports the
version the alias names *now*: each process for `local` and `docker`, the Service (as many answers
in a row as twice the replicas, after the rollout completed) for `kubernetes`. The alias is read again while waiting, so a rollback or a newer election during
the deploy is followed rather than waited for, and a serving that already reports the newer
champion is a success. A deploy that serving does not confirm fails and says why.
"""

import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone

import dagster as dg
import httpx

from skin_cancer_contract.api import DEFAULT_SERVING_URL
from skin_cancer_contract.registry import CHAMPION_ALIAS, CHAMPION_URI, REGISTERED_MODEL_NAME

POLL_SECONDS = 0.25
"""How often a deploy asks serving for its version: a swap is seen within this."""
ALIAS_RECHECK_SECONDS = 2.0
"""How often a waiting deploy reads the alias again."""
PROBE_TIMEOUT_SECONDS = 3.0
"""One HTTP question to serving or the registry; short, so a sensor tick never hangs."""
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
"""The pod template annotation `kubectl rollout restart` sets; changing it rolls every pod."""


class DeployError(RuntimeError):
    """Serving did not take the champion; the message says where and why."""


@dataclass(frozen=True)
class Rollout:
    action: str
    """What was done, for the log and the deployment record."""
    replica_urls: list[str]
    """Where to ask `GET /model`; every entry must report the version (a URL listed n times:
    n answers in a row through a load balancer)."""


def post_reload(url: str, admin_token: str) -> str:
    """Ask one serving process to load MODEL_URI again; the old model answers until the swap."""
    reload_url = f"{url}/admin/reload"
    try:
        response = httpx.post(reload_url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=10)
    except httpx.HTTPError as error:
        raise DeployError(f"serving at {reload_url} is unreachable: {error}") from error
    if response.status_code in (401, 403):
        raise DeployError(f"serving at {reload_url} refused the reload: check SERVING_ADMIN_TOKEN")
    if response.status_code >= 400:
        raise DeployError(f"serving at {reload_url} answered {response.status_code}: {response.text[:300]}")
    return f"POST {reload_url} -> {response.status_code}"


def model_answer(url: str) -> dict:
    """Serving's `GET /model` body, its `version` a string (None while no model is loaded: 503)."""
    response = httpx.get(f"{url}/model", timeout=PROBE_TIMEOUT_SECONDS)
    body = response.json()
    if response.status_code not in (200, 503):
        raise httpx.HTTPStatusError(f"GET {url}/model answered {response.status_code}", request=response.request, response=response)
    version = body.get("version")
    return {**body, "version": None if version is None else str(version)}


class ServingTarget(dg.ConfigurableResource, ABC):
    serving_url: str = DEFAULT_SERVING_URL
    """Where serving answers (one replica, or a load balancer in front of them)."""
    mlflow_tracking_uri: str
    """The registry holding the alias serving loads."""
    mlflow_username: str | None = None
    mlflow_password: str | None = None
    """Basic-auth credentials of a tracking server that asks for them (MLflow's `--app-name basic-auth`)."""
    timeout_seconds: float = 180.0

    @property
    @abstractmethod
    def kind(self) -> str: ...

    @abstractmethod
    def roll_out(self) -> Rollout:
        """Make every serving replica load the alias's current version."""

    def champion_version(self) -> str | None:
        """The version the alias names now; None when there is no champion yet.

        Only a missing model or alias means "no champion"; any other registry error is a DeployError.
        A tracking server is asked once, within PROBE_TIMEOUT_SECONDS (MLflow's client would retry
        a 5xx for minutes, and a sensor tick must not hang); a database or file store through
        MLflow's client, which does not retry.
        """
        where = f"the MLflow registry at {self.mlflow_tracking_uri} (MLFLOW_TRACKING_URI)"
        if self.mlflow_tracking_uri.startswith(("http://", "https://")):
            aliases = self._aliases_from_server(where)
        else:
            aliases = self._aliases_from_store(where)
        version = None if aliases is None else aliases.get(CHAMPION_ALIAS)
        return None if version is None else str(version)

    def _aliases_from_server(self, where: str) -> dict[str, str] | None:
        """The registered model's aliases through one bounded REST call; None: no such model."""
        url = f"{self.mlflow_tracking_uri.rstrip('/')}/api/2.0/mlflow/registered-models/get"
        try:
            credentials = (self.mlflow_username, self.mlflow_password) if self.mlflow_username else None
            response = httpx.get(url, params={"name": REGISTERED_MODEL_NAME}, auth=credentials, timeout=PROBE_TIMEOUT_SECONDS)
        except httpx.HTTPError as error:
            raise DeployError(
                f"MLflow tracking server {self.mlflow_tracking_uri} (MLFLOW_TRACKING_URI) is unreachable: {error}"
            ) from error
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 404 and body.get("error_code") == "RESOURCE_DOES_NOT_EXIST":
            return None
        if response.status_code != 200 or "registered_model" not in body:
            raise DeployError(
                f"{where} could not say which version {CHAMPION_URI} names: "
                f"GET {url} answered {response.status_code}: {response.text[:300]}"
            )
        return {alias["alias"]: alias["version"] for alias in body["registered_model"].get("aliases", [])}

    def _aliases_from_store(self, where: str) -> dict[str, str] | None:
        """The registered model's aliases in a database or file store; None: no such model."""
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            return mlflow.MlflowClient(self.mlflow_tracking_uri).get_registered_model(REGISTERED_MODEL_NAME).aliases
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise DeployError(f"{where} could not say which version {CHAMPION_URI} names: {error}") from error

    def served_version(self) -> str | None:
        """The version serving reports at `serving_url` (None: no model loaded); DeployError when unreachable."""
        try:
            return model_answer(self.serving_url)["version"]
        except (httpx.HTTPError, ValueError) as error:
            raise DeployError(f"serving at {self.serving_url} is unreachable (SERVING_URL): {error}") from error

    def deploy(self, log) -> dict:
        """Roll the alias's version out and wait until every address of the rollout reports the alias's version."""
        requested = self.champion_version()
        if requested is None:
            raise DeployError(f"nothing to deploy: {CHAMPION_URI} does not exist in {self.mlflow_tracking_uri}")
        rollout = self.roll_out()
        log.info(f"{self.kind}: {rollout.action}; waiting until serving reports version {requested}")
        served = self.wait_for_version(requested, rollout, log)
        return {
            "target": self.kind,
            "serving_url": self.serving_url,
            "action": rollout.action,
            "requested_version": requested,
            "served": served,
        }

    def wait_for_version(self, version: str, rollout: Rollout, log) -> dict:
        """Wait until every address of `rollout` reports the version the alias names (a Service: n answers in a row).

        `version` is what was asked for; if the alias moves meanwhile, the wait follows it (and
        rolls out again when no replica has the new version yet), so it ends as soon as serving
        reports the current champion, older or newer than the one asked for.
        """
        deadline = time.monotonic() + self.timeout_seconds
        wanted, alias_read_at, answers, last = str(version), time.monotonic(), [], "no answer yet"
        while time.monotonic() < deadline:
            if time.monotonic() - alias_read_at >= ALIAS_RECHECK_SECONDS:
                alias_read_at = time.monotonic()
                try:
                    current = self.champion_version()
                except DeployError as error:  # one unanswered read: keep waiting for the version asked for
                    log.warning(f"{error}; still waiting for version {wanted}")
                    current = None
                if current is not None and current != wanted:
                    log.info(f"the alias moved from version {wanted} to {current} during the deploy; following it")
                    wanted = current
                    if all(body.get("version") != current for _, body, _ in answers):
                        rollout = self.roll_out()
                        log.info(f"{self.kind}: {rollout.action}")
            answers = [self._ask(url) for url in rollout.replica_urls]
            lagging = [(url, body, problem) for url, body, problem in answers if body.get("version") != wanted]
            if not lagging:
                return answers[0][1]
            url, body, last = lagging[0]
            reload = body.get("reload") or {}
            if reload.get("state") == "failed":
                raise DeployError(f"serving at {url} failed to load version {wanted}: {reload.get('error')}")
            time.sleep(POLL_SECONDS)
        raise DeployError(
            f"serving did not report version {wanted} (the alias's) within {self.timeout_seconds:.0f}s (last: {last})"
        )

    @staticmethod
    def _ask(url: str) -> tuple[str, dict, str]:
        """(url, the /model body, a description for errors); an empty body when serving does not answer."""
        try:
            body = model_answer(url)
        except (httpx.HTTPError, ValueError) as error:
            return url, {}, f"{url}: {type(error).__name__}: {error}"
        state = (body.get("reload") or {}).get("state")
        return url, body, f"{url}: version {body['version']}, reload {state}"


class LocalServingTarget(ServingTarget):
    """One serving process reached over HTTP: it reloads through `POST /admin/reload`."""

    admin_token: str

    @property
    def kind(self) -> str:
        return "local"

    def roll_out(self) -> Rollout:
        return Rollout(post_reload(self.serving_url, self.admin_token), [self.serving_url])


class DockerServingTarget(ServingTarget):
    """Every container of the Compose service reloads through serving's HTTP API.

    Nothing is recreated, so each container keeps the name Compose gave it, its port bindings,
    restart policy, labels and networks, and its old model answers until the new one is swapped
    in: no downtime. The Docker API (DOCKER_HOST) only finds the containers, by Compose's labels;
    each is reached by its name on the Compose network.
    """

    admin_token: str
    compose_project: str = "skin-cancer"
    compose_service: str = "serving"
    port: int = 8000
    docker_host: str | None = None
    """The Docker API; None: the docker SDK's own default (DOCKER_HOST, else the local socket)."""

    @property
    def kind(self) -> str:
        return "docker"

    def replica_urls(self) -> list[str]:
        import docker
        import requests

        where = self.docker_host or "DOCKER_HOST (or the local Docker socket)"
        labels = [f"com.docker.compose.project={self.compose_project}", f"com.docker.compose.service={self.compose_service}"]
        try:
            client = docker.DockerClient(base_url=self.docker_host) if self.docker_host else docker.from_env()
            containers = client.containers.list(filters={"label": labels, "status": "running"})
        except (docker.errors.DockerException, requests.RequestException) as error:
            raise DeployError(f"the Docker API at {where} is unreachable: {error}") from error
        if not containers:
            raise DeployError(
                f"no running container of Compose service {self.compose_service!r} "
                f"(project {self.compose_project!r}) at {where}"
            )
        return [f"http://{container.name}:{self.port}" for container in sorted(containers, key=lambda c: c.name)]

    def roll_out(self) -> Rollout:
        urls = self.replica_urls()
        actions = [post_reload(url, self.admin_token) for url in urls]
        return Rollout("; ".join(actions), urls)


class KubernetesServingTarget(ServingTarget):
    """A rolling restart of the serving Deployment through the Kubernetes API (no kubectl).

    With `maxUnavailable: 0` and readiness on `/ready` (deploy/k8s/serving.yaml), each new pod
    loads the champion before an old one stops, so requests never fail. The deploy waits until
    the rollout is complete (every replica new and available), then asks the Service twice per
    replica in a row for the version.
    """

    deployment: str = "skin-cancer-serving"
    namespace: str = "default"
    kubeconfig: str | None = None
    """A kubeconfig file; None: in a pod, its service account, else KUBECONFIG or ~/.kube/config."""

    @property
    def kind(self) -> str:
        return "kubernetes"

    def roll_out(self) -> Rollout:
        from kubernetes import client

        api_client = self._api_client()
        apps = client.AppsV1Api(api_client)
        host = api_client.configuration.host
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: datetime.now(timezone.utc).isoformat()}}}}}
        patched = self._call(host, "patch", apps.patch_namespaced_deployment, self.deployment, self.namespace, patch)
        replicas = self._wait_for_rollout(host, apps, patched.metadata.generation)
        action = f"rolling restart of deployment/{self.deployment} in namespace {self.namespace} ({replicas} replicas)"
        return Rollout(action, [self.serving_url] * (2 * replicas))

    def _api_client(self):
        from kubernetes import client, config

        configuration = client.Configuration()
        try:
            if self.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=configuration)
            else:
                config.load_kube_config(config_file=self.kubeconfig, client_configuration=configuration)
        except config.ConfigException as error:
            raise DeployError(f"no Kubernetes API configuration (in-cluster service account or kubeconfig): {error}") from error
        return client.ApiClient(configuration)

    def _call(self, host: str, verb: str, method, *args):
        """One API call; an unreachable server or a refusal becomes a DeployError naming both."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        what = f"{verb} deployment/{self.deployment} in namespace {self.namespace}"
        try:
            return method(*args, _request_timeout=PROBE_TIMEOUT_SECONDS * 3)
        except urllib3.exceptions.HTTPError as error:
            raise DeployError(f"the Kubernetes API server {host} is unreachable ({what}): {error}") from error
        except ApiException as error:
            hint = " (the run's service account needs get and patch on deployments: deploy/k8s/serving.yaml)" if error.status == 403 else ""
            raise DeployError(f"the Kubernetes API server {host} refused to {what}: {error.status} {error.reason}{hint}") from error

    def _wait_for_rollout(self, host: str, apps, generation: int) -> int:
        """Until every replica runs the new pod template and is available (as `kubectl rollout status`)."""
        deadline, progress = time.monotonic() + self.timeout_seconds, "no status read"
        while time.monotonic() < deadline:
            deployment = self._call(host, "read", apps.read_namespaced_deployment_status, self.deployment, self.namespace)
            wanted, status = deployment.spec.replicas, deployment.status
            stalled = [c for c in status.conditions or [] if c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded"]
            if stalled:
                raise DeployError(f"deployment/{self.deployment} stopped progressing: {stalled[0].message}")
            progress = f"{status.updated_replicas or 0} of {wanted} updated, {status.available_replicas or 0} available"
            if (status.observed_generation or 0) >= generation and (status.updated_replicas or 0) == wanted and (
                status.replicas or 0
            ) == wanted and (status.available_replicas or 0) == wanted:
                return wanted
            time.sleep(1)
        raise DeployError(f"deployment/{self.deployment} did not finish rolling within {self.timeout_seconds:.0f}s ({progress})")
