"""Resources chosen by the environment: the same code runs on a laptop, MinIO or AWS.

Unset AWS_BUCKET keeps everything on the local disk under `state/`; setting it (with the
other AWS_* variables) moves every asset to S3. Secrets are read with `dg.EnvVar`, at run
time, and never appear in code or logs.
"""

import os
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

from resources.deploy import DockerServingTarget, KubernetesServingTarget, LocalServingTarget, ServingTarget
from resources.image_source import RawImageSource
from resources.mlflow_tracking import mlflow_resource_from_env, state_dir
from resources.storage import ArtifactIOManager, ArtifactStore, LocalArtifactStore, S3ArtifactStore

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "skin-cancer"


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
        return S3ArtifactStore(s3=s3_resource(), bucket=dg.EnvVar("AWS_BUCKET"), prefix=os.environ.get("AWS_PREFIX", "dagster"))
    return LocalArtifactStore(base_dir=str(state_dir() / "storage"))


def serving_target() -> ServingTarget:
    kind = os.environ.get("SERVING_DEPLOY_TARGET", "local")
    common = {"serving_url": _env_or("SERVING_URL", "http://127.0.0.1:8000")}
    if kind == "local":
        return LocalServingTarget(admin_token=dg.EnvVar("SERVING_ADMIN_TOKEN"), **common)
    if kind == "docker":
        return DockerServingTarget(container_name=os.environ.get("SERVING_CONTAINER", "skin-cancer-serving"), **common)
    if kind == "kubernetes":
        return KubernetesServingTarget(
            deployment=os.environ.get("SERVING_DEPLOYMENT", "skin-cancer-serving"),
            namespace=os.environ.get("SERVING_NAMESPACE", "default"),
            **common,
        )
    raise ValueError(f"SERVING_DEPLOY_TARGET={kind!r}: choose local, docker or kubernetes")


def build_resources() -> dict:
    data = os.environ.get("SKIN_CANCER_DATA")
    return {
        "io_manager": ArtifactIOManager(store=artifact_store()),
        "image_source": RawImageSource(
            location=dg.EnvVar("SKIN_CANCER_DATA") if data else str(DEFAULT_DATA),
            s3=s3_resource() if (data or "").startswith("s3://") else None,
        ),
        "mlflow": mlflow_resource_from_env(),
        "serving_target": serving_target(),
    }
