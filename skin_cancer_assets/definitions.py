"""The training location: one Definitions for one profile, resources chosen by the environment.

The serving group and its sensors are the deploy location's (deploy_location.py), so that a deploy
run does not import this one."""

import dagster as dg

from skin_cancer_assets.assets.champion import champion_asset
from skin_cancer_assets.assets.data import preprocessed_arrays, raw_images_asset, validation_split_asset
from skin_cancer_assets.assets.models import model_assets
from skin_cancer_assets.assets.monitoring import (
    monitor_production,
    monitor_yesterday,
    production_drift,
    production_performance,
    production_predictions,
)
from skin_cancer_assets.environment import (
    RETRAIN_INTERVAL_SECONDS,
    RETRAIN_QUIET_TICKS,
    executor_from_env,
    gpu_step_tags,
    profile_from_env,
    retrain_interval,
    retrain_quiet_ticks,
)
from skin_cancer_assets.jobs import train_and_elect
from skin_cancer_assets.pipeline_resources import build_resources
from skin_cancer_assets.profiles import Profile
from skin_cancer_assets.sensors import retrain_sensor


def build_defs(
    profile: Profile,
    gpu_tags: dict | None = None,
    retrain_every: int | None = RETRAIN_INTERVAL_SECONDS,
    retrain_quiet: int = RETRAIN_QUIET_TICKS,
) -> dg.Definitions:
    """The whole graph for `profile`: it reaches the assets as the `profile` resource and sets the
    launchpad defaults of the data gates, the model assets and the election. `gpu_tags` go on the
    steps of models that want a GPU; the retrain sensor lists the data source every `retrain_every`
    seconds (None: it starts stopped) and retrains once a change was seen `retrain_quiet` times in a row."""
    return dg.Definitions(
        assets=[
            raw_images_asset(profile),
            preprocessed_arrays,
            validation_split_asset(profile),
            *model_assets(profile, gpu_tags or {}),
            champion_asset(profile),
            production_predictions,
            production_performance,
            production_drift,
        ],
        jobs=[train_and_elect, monitor_production],
        schedules=[monitor_yesterday],
        sensors=[retrain_sensor(retrain_every, retrain_quiet)],
        resources=build_resources(profile),
        executor=executor_from_env(),
    )


defs = build_defs(profile_from_env(), gpu_step_tags(), retrain_interval(), retrain_quiet_ticks())
