"""The code location: one Definitions, resources chosen by the environment."""

import os

import dagster as dg

from resources.environment import build_resources
from skin_cancer_assets.assets.champion import champion_model
from skin_cancer_assets.assets.data import preprocessed_arrays, raw_images
from skin_cancer_assets.assets.deployment import serving_deployment
from skin_cancer_assets.assets.models import model_assets
from skin_cancer_assets.jobs import deploy_champion, train_and_elect
from skin_cancer_assets.sensors import redeploy_on_new_champion


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


defs = dg.Definitions(
    assets=[raw_images, preprocessed_arrays, *model_assets, champion_model, serving_deployment],
    jobs=[train_and_elect, deploy_champion],
    sensors=[redeploy_on_new_champion],
    resources=build_resources(),
    executor=executor_from_env(),
)
