"""Jobs: train and elect (the whole pipeline up to the champion), and deploy.

Each job tags its runs with its kind; every instance file lets one run of each kind be in
progress at a time and three runs in all, so two elections run one after the other and a
deploy finds a slot while an election and a monitoring run are in progress. A run without the
tag (an asset materialized from the UI's graph) counts only against the three.
"""

import dagster as dg
from dagster_mlflow import end_mlflow_on_run_finished

RUN_KIND = "skin_cancer/kind"
"""Run tag the instance files' run queue limits per kind of run."""
ELECTION, DEPLOY, MONITORING = "election", "deploy", "monitoring"
"""The kinds of run the instance files limit; `monitor_production` (assets/monitoring.py) is tagged MONITORING."""

train_and_elect = dg.define_asset_job(
    "train_and_elect",
    selection=dg.AssetSelection.groups("data", "training", "selection"),
    description="Manifest, arrays, every model in the zoo and the champion election.",
    hooks={end_mlflow_on_run_finished},
    tags={RUN_KIND: ELECTION},
)

deploy_champion = dg.define_asset_job(
    "deploy_champion",
    selection=dg.AssetSelection.assets("serving_deployment"),
    description="Roll the current champion out to serving and wait until serving reports it.",
    tags={RUN_KIND: DEPLOY},
    executor_def=dg.in_process_executor,  # one step: no second process to start, and retries start on time
)
