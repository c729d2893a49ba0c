"""`python -m skin_cancer_assets.cli`: run the whole pipeline on this machine and print the champion.

Runs the `train_and_elect` job on the Dagster instance at $DAGSTER_HOME with the job's
multiprocess executor, exactly as a launch from the Dagster UI would.
"""

import sys

import dagster as dg

from skin_cancer_assets.profiles import active_profile


def train_and_elect_job():
    from skin_cancer_assets.definitions import defs

    return defs.resolve_job_def("train_and_elect")


def main() -> int:
    profile = active_profile()
    print(f"profile {profile.name}: materializing the whole graph (data, models, champion)", flush=True)
    with dg.DagsterInstance.get() as instance:
        with dg.execute_job(dg.reconstructable(train_and_elect_job), instance=instance) as result:
            if not result.success:
                print(f"run {result.run_id} failed; see `make dev` -> Runs, or the log above", file=sys.stderr)
                return 1
            champion = result.output_for_node("champion_model")
    metrics = ", ".join(f"{name} {value:.3f}" for name, value in champion["metrics"].items() if value is not None)
    print(f"champion: {champion['name']} version {champion['version']} ({champion['model_class']}), {champion['decision']}")
    print(f"  test metrics: {metrics}; threshold {champion['threshold']:.3f}")
    print(f"  {champion['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
