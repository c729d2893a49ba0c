"""The MLflow resource: dagster-mlflow's `mlflow_tracking`, checked and prepared first.

dagster-mlflow opens one MLflow run per Dagster run (found again by its `dagster_run_id`
tag in every step process); model assets log into nested runs of their own. Before handing
over, this resource fails fast with the URL when a tracking server is unreachable, and
gives a local store's experiment an artifact folder beside its database.
"""

import os
from pathlib import Path

import dagster as dg
import httpx
import mlflow
from dagster import Field, Noneable, StringSource
from dagster_mlflow import mlflow_tracking
from dagster_mlflow.resources import CONFIG_SCHEMA

REGISTERED_MODEL_NAME = "skin-cancer-classifier"
CHAMPION_ALIAS = "champion"
CHAMPION_URI = f"models:/{REGISTERED_MODEL_NAME}@{CHAMPION_ALIAS}"
DEFAULT_EXPERIMENT = "cnn_skin_cancer"


def state_dir() -> Path:
    """Local state (storage, MLflow store, Dagster home) of the embedded defaults."""
    return Path(os.environ.get("SKIN_CANCER_STATE", Path(__file__).resolve().parents[1] / "state"))


def local_tracking_uri() -> str:
    return f"sqlite:///{state_dir() / 'mlflow' / 'mlflow.db'}"


def check_tracking_server(tracking_uri: str) -> None:
    """Raise a Failure naming the URL when an HTTP tracking server does not answer."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    try:
        httpx.get(f"{tracking_uri.rstrip('/')}/health", timeout=10).raise_for_status()
    except httpx.HTTPError as error:
        raise dg.Failure(
            f"MLflow tracking server {tracking_uri} (MLFLOW_TRACKING_URI) is unreachable: {error}"
        ) from error


def ensure_local_experiment(tracking_uri: str, experiment_name: str) -> None:
    """Create a local store's experiment with its artifacts next to the database."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    client = mlflow.MlflowClient(tracking_uri)
    if client.get_experiment_by_name(experiment_name) is None:
        client.create_experiment(experiment_name, artifact_location=(database.parent / "artifacts").as_uri())


@dg.resource(
    config_schema={**CONFIG_SCHEMA, "mlflow_tracking_uri": Field(Noneable(StringSource), default_value=None)},
    description="dagster-mlflow tracking, with a reachability check and a local default store.",
)
def mlflow_resource(context):
    tracking_uri = context.resource_config.get("mlflow_tracking_uri") or local_tracking_uri()
    check_tracking_server(tracking_uri)
    ensure_local_experiment(tracking_uri, context.resource_config["experiment_name"])
    mlflow.set_tracking_uri(tracking_uri)
    while mlflow.active_run():  # a run left active by an earlier in-process run must not be reused
        mlflow.end_run()
    yield from mlflow_tracking.resource_fn(context)


def mlflow_resource_from_env() -> dg.ResourceDefinition:
    """Tracking URI and experiment from MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_NAME, read at run time."""
    config = {
        "experiment_name": {"env": "MLFLOW_EXPERIMENT_NAME"}
        if os.environ.get("MLFLOW_EXPERIMENT_NAME")
        else DEFAULT_EXPERIMENT,
        "mlflow_tracking_uri": {"env": "MLFLOW_TRACKING_URI"} if os.environ.get("MLFLOW_TRACKING_URI") else None,
    }
    return mlflow_resource.configured(config)


def tracking_ui_url(tracking_uri: str) -> str:
    """Where a person opens the runs: the server itself, or `make dev`'s MLflow UI for a local store."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return os.environ.get("MLFLOW_UI_URL", "http://127.0.0.1:5000")
