"""The code location's decisions that depend on the environment, in one module: the same code runs on a
laptop, MinIO or AWS.

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
from dagster_aws.s3 import S3Resource

from resources.deploy import DockerServingTarget, KubernetesServingTarget, LocalServingTarget, ServingTarget
from resources.image_source import RawImageSource
from resources.mlflow_tracking import mlflow_resource
from resources.model_registry import ModelRegistry
from resources.production_log import ProductionLog
from resources.storage import ArtifactIOManager, ArtifactStore, LocalArtifactStore, S3ArtifactStore
from skin_cancer_assets.profiles import Profile, profile_named
from skin_cancer_contract.api import DEFAULT_SERVING_URL
from skin_cancer_contract.monitoring import local_storage_folder, state_folder, storage_prefix
from skin_cancer_contract.registry import DEFAULT_EXPERIMENT

LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"
"""Where `make dev` serves the MLflow UI of the local store."""


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


def _env_or(name: str, default=None):
    """An EnvVar when the variable is set (read at run time), else the default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def s3_resource() -> S3Resource:
    return S3Resource(
        region_name=_env_or("AWS_REGION"),
        endpoint_url=_env_or("AWS_ENDPOINT_URL"),
        aws_access_key_id=_env_or("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=_env_or("AWS_SECRET_ACCESS_KEY"),
        max_attempts=int(os.environ.get("AWS_MAX_ATTEMPTS", "4")),
    )


def artifact_store() -> ArtifactStore:
    if os.environ.get("AWS_BUCKET"):
        return S3ArtifactStore(s3=s3_resource(), bucket=dg.EnvVar("AWS_BUCKET"), prefix=storage_prefix(os.environ))
    return LocalArtifactStore(base_dir=str(local_storage_folder(os.environ)))


def image_source() -> RawImageSource:
    data = os.environ.get("SKIN_CANCER_DATA")
    return RawImageSource(
        location=dg.EnvVar("SKIN_CANCER_DATA") if data else str(default_data_folder()),
        s3=s3_resource() if (data or "").startswith("s3://") else None,
    )


def local_tracking_uri() -> str:
    """The MLflow store of the embedded defaults, a sqlite file in the state folder."""
    return f"sqlite:///{state_dir() / 'mlflow' / 'mlflow.db'}"


def mlflow_tracking() -> dg.ResourceDefinition:
    """MLFLOW_TRACKING_URI (default: a sqlite store in the state folder), MLFLOW_EXPERIMENT_NAME and
    MLFLOW_UI_URL (where a browser reaches the UI, when that is not the tracking URI), read at run time."""
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
    local = not tracking_uri or not tracking_uri.startswith(("http://", "https://"))
    return mlflow_resource.configured(
        {
            "experiment_name": _config_env("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT),
            "mlflow_tracking_uri": _config_env("MLFLOW_TRACKING_URI", local_tracking_uri()),
            "mlflow_ui_url": _config_env("MLFLOW_UI_URL", LOCAL_MLFLOW_UI if local else None),
        }
    )


def _config_env(name: str, default):
    """Legacy-resource config read from the environment at run time when set, else the default."""
    return {"env": name} if os.environ.get(name) else default


def serving_target() -> ServingTarget:
    """SERVING_DEPLOY_TARGET: `local` (reload over HTTP), `docker` (every container of the Compose
    service reloads over HTTP) or `kubernetes` (a rolling restart of the Deployment)."""
    kind = os.environ.get("SERVING_DEPLOY_TARGET", "local")
    common = {
        "serving_url": _env_or("SERVING_URL", DEFAULT_SERVING_URL),
        "mlflow_tracking_uri": _env_or("MLFLOW_TRACKING_URI", local_tracking_uri()),
        "mlflow_username": _env_or("MLFLOW_TRACKING_USERNAME"),  # the names MLflow's own client reads
        "mlflow_password": _env_or("MLFLOW_TRACKING_PASSWORD"),
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


def build_resources(profile: Profile) -> dict:
    store = artifact_store()
    return {
        "profile": profile,
        "io_manager": ArtifactIOManager(store=store),
        "production_log": ProductionLog(store=store),  # serving writes its log into the same storage
        "image_source": image_source(),
        "mlflow": mlflow_tracking(),
        "model_registry": ModelRegistry(tracking_uri=_env_or("MLFLOW_TRACKING_URI", local_tracking_uri())),
        "serving_target": serving_target(),
    }
