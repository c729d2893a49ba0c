"""The training location's jobs: train and elect (the whole pipeline up to the champion).

`monitor_production` is defined beside its assets (assets/monitoring.py) and `deploy_champion`
in the deploy location (deploy_location.py)."""

import dagster as dg
from dagster_mlflow import end_mlflow_on_run_finished

from skin_cancer_assets.runs import ELECTION, RUN_KIND

train_and_elect = dg.define_asset_job(
    "train_and_elect",
    selection=dg.AssetSelection.groups("data", "training", "selection"),
    description="Manifest, arrays, every model in the zoo and the champion election.",
    hooks={end_mlflow_on_run_finished},
    tags={RUN_KIND: ELECTION},
)
