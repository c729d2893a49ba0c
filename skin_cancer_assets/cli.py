"""`python -m skin_cancer_assets.cli`: run the whole pipeline on this machine and print the champion.

Runs the `train_and_elect` job on the Dagster instance at $DAGSTER_HOME with the job's
multiprocess executor, exactly as a launch from the Dagster UI would.
"""

import sys

import dagster as dg

from skin_cancer_assets.environment import profile_from_env
from skin_cancer_contract.registry import REGISTERED_MODEL_NAME


def train_and_elect_job():
    from skin_cancer_assets.definitions import defs

    return defs.resolve_job_def("train_and_elect")


def latest_metadata(instance: dg.DagsterInstance, asset: str) -> dict:
    """The metadata values of `asset`'s latest materialization, as the Dagster UI shows them."""
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def print_champion(instance: dg.DagsterInstance) -> None:
    """The champion as the latest `champion_model` materialization recorded it."""
    metadata = latest_metadata(instance, "champion_model")
    metrics = ", ".join(f"{key.removeprefix('test_')} {value:.3f}" for key, value in metadata.items() if key.startswith("test_"))
    print(
        f"champion: {REGISTERED_MODEL_NAME} version {metadata['champion_version']} "
        f"({metadata['champion_class']}), {metadata['decision']}"
    )
    print(f"  test metrics: {metrics}")
    print(f"  {metadata['reason']}")


def main() -> int:
    profile = profile_from_env()
    print(f"profile {profile.name}: materializing the whole graph (data, models, champion)", flush=True)
    with dg.DagsterInstance.get() as instance:
        with dg.execute_job(dg.reconstructable(train_and_elect_job), instance=instance) as result:
            if not result.success:
                print(f"run {result.run_id} failed; see `make dev` -> Runs, or the log above", file=sys.stderr)
                return 1
        print_champion(instance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
