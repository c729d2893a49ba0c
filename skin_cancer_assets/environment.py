"""The code locations' decisions that depend on the environment: the same code runs on a laptop,
MinIO or AWS. This module reads the environment and stays light (Dagster and the deploy target,
no MLflow, boto3 or TensorFlow), so the deploy location can import it; the training location's
resources (storage, the image source, MLflow) are built in pipeline_resources.py.

Not every read is here: the Kubernetes deploy target checks `KUBERNETES_SERVICE_HOST` itself
(resources/deploy.py: in a pod, the service account), `python -m skin_cancer_assets.upload_data`
reads `SKIN_CANCER_DATA`, and serving (serving/settings.py) and the app (streamlit_app/app.py), which
do not import this package, read their own variables.

Unset variables keep the embedded local defaults: storage and the MLflow store under the
state folder, the data set beside the checkout, serving on loopback. Setting AWS_BUCKET
(with the other AWS_* variables) moves every asset to S3. Secrets are read with
`dg.EnvVar`, at run time, and never appear in code or logs.
"""

import os
from pathlib import Path

import dagster as dg

from resources.deploy import DockerServingTarget, KubernetesServingTarget, LocalServingTarget, ServingTarget
from skin_cancer_assets.profiles import Profile, profile_named
from skin_cancer_contract.api import DEFAULT_SERVING_URL
from skin_cancer_contract.monitoring import state_folder


def profile_from_env() -> Profile:
    """SKIN_CANCER_PROFILE: `default` (the full data set) or `smoke` (a small real subset)."""
    return profile_named(os.environ.get("SKIN_CANCER_PROFILE", "default"))


def state_dir() -> Path:
    """Local state (storage, MLflow store, Dagster home) of the embedded defaults: SKIN_CANCER_STATE or ./state."""
    return state_folder(os.environ)


def default_data_folder() -> Path:
    """The shared data set beside the checkout, as laid out on this project's machines."""
    return (Path.cwd().parent / "shared" / "datasets" / "skin-cancer").resolve()


RETRAIN_INTERVAL_SECONDS = 60
"""How often the retrain sensor lists the data source unless SKIN_CANCER_RETRAIN_SECONDS says otherwise."""


def retrain_interval() -> int | None:
    """SKIN_CANCER_RETRAIN_SECONDS: how often the retrain sensor lists the data source (default
    60), or `off`: the sensor starts stopped (it can still be started in the UI). None means off."""
    value = os.environ.get("SKIN_CANCER_RETRAIN_SECONDS", str(RETRAIN_INTERVAL_SECONDS)).strip()
    if value.lower() == "off":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"SKIN_CANCER_RETRAIN_SECONDS={value!r}: give a whole number of seconds (at least 1) or `off`")
    return int(value)


RETRAIN_QUIET_TICKS = 2
"""Sensor evaluations in a row that must see the same changed listing before a retrain starts: an
upload still in progress keeps changing it, and waits."""


def retrain_quiet_ticks() -> int:
    """SKIN_CANCER_RETRAIN_QUIET_TICKS: how many evaluations in a row must see the same changed data
    before the retrain sensor starts a run (default 2: the data stayed unchanged for one interval)."""
    value = os.environ.get("SKIN_CANCER_RETRAIN_QUIET_TICKS", str(RETRAIN_QUIET_TICKS)).strip()
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise ValueError(f"SKIN_CANCER_RETRAIN_QUIET_TICKS={value!r}: give a whole number of evaluations (at least 1)")
    return int(value)


def executor_from_env() -> dg.ExecutorDefinition:
    """Steps in parallel processes, one per core; DAGSTER_EXECUTOR=docker or k8s: a container or Job per step."""
    kind = os.environ.get("DAGSTER_EXECUTOR", "multiprocess")
    if kind == "multiprocess":
        return dg.multiprocess_executor.configured({"max_concurrent": os.cpu_count() or 1})
    if kind == "docker":
        from dagster_docker import docker_executor

        return docker_executor
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"DAGSTER_EXECUTOR={kind!r}: choose multiprocess, docker or k8s")


def gpu_step_tags() -> dict:
    """SKIN_CANCER_K8S_GPU=1: on Kubernetes (k8s_job_executor) the steps of models that want a GPU
    request one and tolerate GPU nodes. Off by default, so a cluster without GPU nodes never leaves
    a step Pending."""
    if os.environ.get("SKIN_CANCER_K8S_GPU") != "1":
        return {}
    return {
        "dagster-k8s/config": {
            "container_config": {
                "resources": {
                    "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
                    "limits": {"memory": "24Gi", "nvidia.com/gpu": "1"},
                }
            },
            "pod_spec_config": {
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
            },
        }
    }


def env_or(name: str, default=None):
    """An EnvVar when the variable is set (read at run time), else the default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def local_tracking_uri() -> str:
    """The MLflow store of the embedded defaults, a sqlite file in the state folder."""
    return f"sqlite:///{state_dir() / 'mlflow' / 'mlflow.db'}"


def serving_target() -> ServingTarget:
    """SERVING_DEPLOY_TARGET: `local` (reload over HTTP), `docker` (every container of the Compose
    service reloads over HTTP) or `kubernetes` (a rolling restart of the Deployment)."""
    kind = os.environ.get("SERVING_DEPLOY_TARGET", "local")
    common = {
        "serving_url": env_or("SERVING_URL", DEFAULT_SERVING_URL),
        "mlflow_tracking_uri": env_or("MLFLOW_TRACKING_URI", local_tracking_uri()),
        "mlflow_username": env_or("MLFLOW_TRACKING_USERNAME"),  # the names MLflow's own client reads
        "mlflow_password": env_or("MLFLOW_TRACKING_PASSWORD"),
    }
    if kind == "local":
        return LocalServingTarget(admin_token=dg.EnvVar("SERVING_ADMIN_TOKEN"), **common)
    if kind == "docker":
        return DockerServingTarget(admin_token=dg.EnvVar("SERVING_ADMIN_TOKEN"), **common)
    if kind == "kubernetes":
        return KubernetesServingTarget(
            deployment=os.environ.get("SERVING_DEPLOYMENT", "skin-cancer-serving"),
            namespace=os.environ.get("SERVING_NAMESPACE") or _pod_namespace() or "default",
            **common,
        )
    raise ValueError(f"SERVING_DEPLOY_TARGET={kind!r}: choose local, docker or kubernetes")


def _pod_namespace() -> str | None:
    """The namespace this process's pod runs in (the service account's), outside a cluster None."""
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.is_file() else None
