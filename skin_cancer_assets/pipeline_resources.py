"""The training location's resources as the environment chooses them: storage, the image source,
MLflow, the registry and the production log. The light readers (profile, retrain interval, the
MLflow store of the embedded defaults) are environment.py's, which the deploy location imports
without this module's MLflow and boto3."""

import os

import dagster as dg
from dagster_aws.s3 import S3Resource

from resources.image_source import RawImageSource
from resources.mlflow_tracking import mlflow_resource
from resources.model_registry import ModelRegistry
from resources.production_log import ProductionLog
from resources.storage import ArtifactIOManager, ArtifactStore, LocalArtifactStore, S3ArtifactStore
from skin_cancer_assets.environment import default_data_folder, env_or, local_tracking_uri
from skin_cancer_assets.profiles import Profile
from skin_cancer_contract.monitoring import local_storage_folder, storage_prefix
from skin_cancer_contract.registry import DEFAULT_EXPERIMENT

LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"
"""Where `make dev` serves the MLflow UI of the local store."""


def s3_resource() -> S3Resource:
    return S3Resource(
        region_name=env_or("AWS_REGION"),
        endpoint_url=env_or("AWS_ENDPOINT_URL"),
        aws_access_key_id=env_or("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env_or("AWS_SECRET_ACCESS_KEY"),
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


def build_resources(profile: Profile) -> dict:
    """Every resource the training location's assets and sensors ask for, by key."""
    store = artifact_store()
    return {
        "profile": profile,
        "io_manager": ArtifactIOManager(store=store),
        "production_log": ProductionLog(store=store),  # serving writes its log into the same storage
        "image_source": image_source(),
        "mlflow": mlflow_tracking(),
        "model_registry": ModelRegistry(tracking_uri=env_or("MLFLOW_TRACKING_URI", local_tracking_uri())),
    }
