"""New data becomes a served champion with no one pressing a button: a real webserver and daemon
(the retrain sensor and both redeploy sensors on), uvicorn and MLflow, over a copy of a small real
subset of the data set to which images are added."""

import shutil
from pathlib import Path

import dagster as dg
import mlflow
import pytest

from skin_cancer_assets.election import PROMOTED
from skin_cancer_assets.jobs import train_and_elect
from skin_cancer_assets.runs import ELECTION, RUN_KIND
from skin_cancer_assets.sensors import SOURCE_DIGEST_TAG, retrain_sensor
from skin_cancer_contract.data import layout
from tests.conftest import copy_subset
from tests.skin_cancer_assets.pipeline import champion_alias_restored
from tests.skin_cancer_assets.redeploy_support import (
    ASSET_SENSOR,
    Platform,
    bring_up,
    crown_a_beatable_champion,
    deploy_runs,
    ticks,
    wait_for,
    wait_for_run,
)

pytestmark = pytest.mark.slow

RETRAIN_SENSOR = retrain_sensor(None).name
PER_CLASS, ADDED = 12, 4
"""Images per split and class before and added: 16 in all, under the smoke profile's cap."""


def hold_back(data: Path, held: Path) -> None:
    """Move the last ADDED images of every split and class out of `data`, into the same layout under `held`."""
    for _, _, folder in layout():
        (held / folder).mkdir(parents=True)
        for image in sorted((data / folder).iterdir())[-ADDED:]:
            image.rename(held / folder / image.name)


def train_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(job_name=train_and_elect.name)))


def test_images_added_to_the_data_retrain_once_and_the_new_champion_is_served(smoke_champion, tmp_path):
    data, held = copy_subset(tmp_path / "data", per_class=PER_CLASS + ADDED), tmp_path / "held"

    def crown_a_champion_the_retrain_beats(platform: Platform) -> None:
        """Scored on the validation images of the data with the added images, the champion ranks
        every benign image above every malignant one (ROC-AUC 0), so a model the retrain trains
        beats it on evidence; then the added images are held back until the sensor has seen the
        data without them."""
        crown_a_beatable_champion(platform, skill=-1.0)
        hold_back(data, held)

    client = mlflow.MlflowClient(smoke_champion["tracking_uri"])
    env = {"SKIN_CANCER_DATA": str(data), "SKIN_CANCER_RETRAIN_SECONDS": "5"}
    with (
        champion_alias_restored(client),
        bring_up(tmp_path / "platform", client.tracking_uri, crown_a_champion_the_retrain_beats, env) as platform,
    ):
        instance, weak = platform.instance, platform.served_version()
        (baseline,) = wait_for(lambda: ticks(instance, RETRAIN_SENSOR), "the retrain sensor's first evaluation", 120, platform.logs)
        assert "first evaluation: 48 files" in baseline.skip_reason and not train_runs(instance)

        for _, _, folder in layout():
            for image in (held / folder).iterdir():
                image.rename(data / folder / image.name)
        (run,) = wait_for(lambda: train_runs(instance), "a train_and_elect run", 120, platform.logs)
        (observation,) = instance.fetch_observations(dg.AssetKey("raw_images"), limit=10).records
        digest = observation.asset_observation.data_version
        assert run.tags[SOURCE_DIGEST_TAG] == digest and run.tags[RUN_KIND] == ELECTION
        assert run.tags["dagster/sensor_name"] == RETRAIN_SENSOR and run.tags["dagster/run_key"] == f"data-{digest}"

        run = wait_for_run(instance, run.run_id, 1500, platform.logs)
        assert run.status == dg.DagsterRunStatus.SUCCESS, platform.logs()
        manifest = instance.get_latest_materialization_event(dg.AssetKey("raw_images"))
        assert manifest.run_id == run.run_id and manifest.asset_materialization.metadata["images"].value == 64
        elected = instance.get_latest_materialization_event(dg.AssetKey("champion_model"))
        assert elected.run_id == run.run_id
        metadata = elected.asset_materialization.metadata
        assert metadata["decision"].value == PROMOTED and metadata["previous_version"].value == weak
        champion = str(metadata["champion_version"].value)

        (deploy,) = wait_for(lambda: deploy_runs(instance, ASSET_SENSOR), "the deploy of the new champion", 120, platform.logs)
        assert wait_for_run(instance, deploy.run_id, 300, platform.logs).status == dg.DagsterRunStatus.SUCCESS
        assert platform.served_version() == champion

        # Two more evaluations after the retrain: the same data retrains no more.
        finished = instance.get_run_record_by_id(run.run_id).end_time
        later = wait_for(lambda: ticks(instance, RETRAIN_SENSOR, after=finished)[1:], "two retrain ticks after the run", 120, platform.logs)
        assert all("no change: 64 files" in tick.skip_reason for tick in later)
        assert [r.run_id for r in train_runs(instance)] == [run.run_id]
