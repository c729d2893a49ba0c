"""Run the real graph in-process for tests (one process: TensorFlow is imported once)."""

from pathlib import Path

import dagster as dg

from resources.environment import build_resources
from skin_cancer_assets.definitions import defs

TRAIN_AND_ELECT = dg.AssetSelection.groups("data", "training", "selection")


def materialize_graph(dagster_home: Path, selection=TRAIN_AND_ELECT, instance=None, **kwargs):
    """Materialize `selection` with resources built from the current environment."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    instance = instance or dg.DagsterInstance.local_temp(str(dagster_home))
    assets = list(defs.assets)
    return dg.materialize(assets, selection=selection, resources=build_resources(), instance=instance, **kwargs)
