"""Jobs: train and elect (the whole pipeline up to the champion), and deploy."""

import dagster as dg
from dagster_mlflow import end_mlflow_on_run_finished

train_and_elect = dg.define_asset_job(
    "train_and_elect",
    selection=dg.AssetSelection.groups("data", "training", "selection"),
    description="Manifest, arrays, every model in the zoo and the champion election.",
    hooks={end_mlflow_on_run_finished},
)

deploy_champion = dg.define_asset_job(
    "deploy_champion",
    selection=dg.AssetSelection.assets("serving_deployment"),
    description="Roll the current champion out to serving and wait until serving reports it.",
)
