"""Deploy targets: how a new champion reaches the serving process.

Each target asks serving to take the champion, then waits until serving's `GET /model`
reports that version; a deploy that serving does not confirm fails and says why.
"""

import subprocess
import time
from abc import ABC, abstractmethod

import dagster as dg
import httpx

from skin_cancer_contract.api import DEFAULT_SERVING_URL


class DeployError(RuntimeError):
    """Serving did not take the new version; the message says where and why."""


class ServingTarget(dg.ConfigurableResource, ABC):
    serving_url: str = DEFAULT_SERVING_URL
    timeout_seconds: float = 180.0

    @property
    @abstractmethod
    def kind(self) -> str: ...

    @abstractmethod
    def roll_out(self) -> str:
        """Make serving load the current champion; returns a short description of what was done."""

    def deploy(self, version: str, log) -> dict:
        action = self.roll_out()
        log.info(f"{self.kind}: {action}; waiting for {self.serving_url}/model to report version {version}")
        served = self.wait_for_version(version)
        return {"target": self.kind, "serving_url": self.serving_url, "action": action, "served": served}

    def wait_for_version(self, version: str) -> dict:
        deadline = time.monotonic() + self.timeout_seconds
        last = "no answer yet"
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"{self.serving_url}/model", timeout=5)
                body = response.json()
                if response.status_code == 200 and str(body.get("version")) == str(version):
                    return body
                reload = body.get("reload") or {}
                if reload.get("state") == "failed":
                    raise DeployError(f"serving at {self.serving_url} failed to load version {version}: {reload.get('error')}")
                last = f"HTTP {response.status_code}, version {body.get('version')}, reload {reload.get('state')}"
            except (httpx.HTTPError, ValueError) as error:
                last = f"{type(error).__name__}: {error}"
            time.sleep(0.5)
        raise DeployError(
            f"serving at {self.serving_url} did not report version {version} within {self.timeout_seconds:.0f}s (last: {last})"
        )


class LocalServingTarget(ServingTarget):
    """A serving process we reach over HTTP: asks it to reload through `/admin/reload`."""

    admin_token: str

    @property
    def kind(self) -> str:
        return "local"

    def roll_out(self) -> str:
        url = f"{self.serving_url}/admin/reload"
        try:
            response = httpx.post(url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=10)
        except httpx.HTTPError as error:
            raise DeployError(f"serving at {url} is unreachable (SERVING_URL): {error}") from error
        if response.status_code in (401, 403):
            raise DeployError(f"serving at {url} refused the reload: check SERVING_ADMIN_TOKEN")
        if response.status_code >= 400:
            raise DeployError(f"serving at {url} answered {response.status_code}: {response.text[:300]}")
        return f"POST {url} -> {response.status_code}"


class DockerServingTarget(ServingTarget):
    """Recreates the serving container through the Docker API (the docker SDK that dagster-docker uses)."""

    container_name: str = "skin-cancer-serving"
    docker_host: str | None = None

    @property
    def kind(self) -> str:
        return "docker"

    def roll_out(self) -> str:
        import docker

        client = docker.DockerClient(base_url=self.docker_host) if self.docker_host else docker.from_env()
        old = client.containers.get(self.container_name)
        attrs = old.attrs
        networks = list(attrs["NetworkSettings"]["Networks"])
        old.stop(timeout=20)
        old.remove()
        new = client.containers.run(
            attrs["Config"]["Image"],
            name=self.container_name,
            environment=attrs["Config"]["Env"],
            ports={port: [int(b["HostPort"]) for b in binds] for port, binds in (attrs["HostConfig"].get("PortBindings") or {}).items()},
            network=networks[0] if networks else None,
            detach=True,
        )
        return f"recreated container {self.container_name} ({new.short_id})"


class KubernetesServingTarget(ServingTarget):
    """Rolls the serving Deployment; new pods load the champion when they start."""

    deployment: str = "skin-cancer-serving"
    namespace: str = "default"

    @property
    def kind(self) -> str:
        return "kubernetes"

    def roll_out(self) -> str:
        command = ["kubectl", "rollout", "restart", f"deployment/{self.deployment}", "-n", self.namespace]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as error:
            detail = getattr(error, "stderr", "") or error
            raise DeployError(f"`{' '.join(command)}` failed: {detail}") from error
        return f"rolled deployment/{self.deployment} in namespace {self.namespace}"
