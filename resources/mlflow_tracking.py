"""The MLflow resource: dagster-mlflow's `mlflow_tracking`, checked and prepared first.

dagster-mlflow opens one MLflow run per Dagster run (found again by its `dagster_run_id`
tag in every step process); model assets log into nested runs of their own. Before handing
over, this resource fails fast with the URL when a tracking server is unreachable, gives a
local store's experiment an artifact folder beside its database, and tells the assets
where a person opens the runs (`ui_url`), for links in the Dagster UI.
"""

from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import mlflow
from dagster import Field, Noneable, StringSource
from dagster_mlflow import mlflow_tracking
from dagster_mlflow.resources import CONFIG_SCHEMA

MlflowTracking = dg.ResourceParam[Any]
"""The type of an asset's `mlflow` parameter: dagster-mlflow's MlFlow object (the mlflow module's
functions, bound to the Dagster run's MLflow run), with `ui_url` added."""


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
    config_schema={
        **CONFIG_SCHEMA,
        "mlflow_tracking_uri": Field(StringSource, description="Tracking server URL or local store URI."),
        "mlflow_ui_url": Field(
            Noneable(StringSource), default_value=None,
            description="Where a browser opens the MLflow UI; the tracking server itself when unset.",
        ),
    },
    description="dagster-mlflow tracking, with a reachability check and a local default store.",
)
def mlflow_resource(context):
    tracking_uri = context.resource_config["mlflow_tracking_uri"]
    check_tracking_server(tracking_uri)
    ensure_local_experiment(tracking_uri, context.resource_config["experiment_name"])
    mlflow.set_tracking_uri(tracking_uri)
    while mlflow.active_run():  # a run left active by an earlier in-process run must not be reused
        mlflow.end_run()
    ui_url = (context.resource_config.get("mlflow_ui_url") or tracking_uri).rstrip("/")
    for tracking in mlflow_tracking.resource_fn(context):
        tracking.ui_url = ui_url
        yield tracking


def run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    return f"{ui_url}/#/experiments/{experiment_id}/runs/{run_id}"


def artifact_url(ui_url: str, run_id: str, path: str) -> str:
    """The raw file of a run's artifact, served by the tracking server (or `make dev`'s MLflow UI)."""
    return f"{ui_url}/get-artifact?path={path}&run_uuid={run_id}"
