"""The retrain sensor's branches, tick by tick: the real sensor against a real (ephemeral) instance,
listing a real copied subset of the images in a temporary folder or in a moto_server bucket."""

import json
import shutil
import uuid

import dagster as dg
import pytest

from resources.image_source import RawImageSource
from skin_cancer_assets.definitions import build_defs
from skin_cancer_assets.environment import RETRAIN_INTERVAL_SECONDS, RETRAIN_QUIET_TICKS, retrain_interval, retrain_quiet_ticks
from skin_cancer_assets.jobs import train_and_elect
from skin_cancer_assets.profiles import PROFILES, Profile
from skin_cancer_assets.runs import UNFINISHED
from skin_cancer_assets.sensors import SOURCE_DIGEST_TAG, retrain_sensor
from skin_cancer_assets.upload_data import upload
from tests.conftest import DATASET, copy_subset

PER_CLASS = 6
SENSOR = retrain_sensor(RETRAIN_INTERVAL_SECONDS)


def unused_image(split: str = "train", label: str = "benign", rank: int = 0):
    """A real image of the data set that `copy_subset(..., PER_CLASS)` did not copy."""
    return sorted((DATASET / split / label).iterdir())[PER_CLASS + rank]


class Ticks:
    """Evaluates the sensor as the daemon does: each tick starts from the cursor the last one left."""

    def __init__(self, instance: dg.DagsterInstance, source: RawImageSource, profile: Profile = PROFILES["smoke"], sensor=SENSOR):
        self.instance, self.source, self.profile, self.cursor, self.sensor = instance, source, profile, None, sensor

    @property
    def trained(self) -> str:
        """The listing digest the cursor holds as trained."""
        return json.loads(self.cursor)["trained"]

    def tick(self, cursor: str | None = None):
        resources = {"image_source": self.source, "profile": self.profile}
        with dg.build_sensor_context(instance=self.instance, cursor=cursor or self.cursor, resources=resources) as context:
            result = self.sensor(context)
        self.cursor = result.cursor if isinstance(result, dg.SensorResult) else context.cursor
        return result

    def retrain(self, quiet_ticks: int = RETRAIN_QUIET_TICKS) -> dg.RunRequest:
        """The next `quiet_ticks` ticks: all but the last wait for the data to settle, the last asks
        for exactly one retrain; returns its request."""
        for seen in range(1, quiet_ticks):
            skipped(self.tick(), f"waiting until it is the same on {quiet_ticks} evaluations in a row ({seen} so far)")
        result = self.tick()
        assert isinstance(result, dg.SensorResult), result
        (request,) = result.run_requests
        (observation,) = result.asset_events
        digest = self.trained
        assert request.run_key == f"data-{digest}" and request.tags == {SOURCE_DIGEST_TAG: digest}
        assert observation.asset_key == dg.AssetKey("raw_images") and observation.data_version == digest
        assert observation.metadata["listing_digest"].value == digest
        return request


def skipped(result, reason: str) -> None:
    assert isinstance(result, dg.SkipReason), result
    assert reason in result.skip_message, result.skip_message


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def folder(tmp_path, dataset):
    return copy_subset(tmp_path / "data", per_class=PER_CLASS)


@pytest.fixture
def ticks(instance, folder) -> Ticks:
    """The first evaluation done: the copied subset is the baseline."""
    ticks = Ticks(instance, RawImageSource(location=str(folder)))
    skipped(ticks.tick(), f"first evaluation: {4 * PER_CLASS} files in {folder}")
    return ticks


def test_the_first_evaluation_records_the_data_as_trained_and_unchanged_data_asks_nothing(ticks):
    baseline = ticks.cursor
    assert len(ticks.trained) == 64
    for _ in range(2):
        skipped(ticks.tick(), f"no change: {4 * PER_CLASS} files")
    assert ticks.cursor == baseline


def test_an_added_image_retrains_once_and_the_same_digest_keeps_its_run_key(ticks, folder):
    baseline = ticks.cursor
    shutil.copy(unused_image(), folder / "train" / "benign")
    request = ticks.retrain()
    assert ticks.cursor != baseline
    skipped(ticks.tick(), f"no change: {4 * PER_CLASS + 1} files")
    ticks.cursor = baseline  # the same ticks evaluated again: the same run key, so one run
    assert ticks.retrain().run_key == request.run_key


def test_an_upload_in_progress_retrains_only_once_the_listing_stops_changing(ticks, folder):
    shutil.copy(unused_image(rank=0), folder / "train" / "benign")
    skipped(ticks.tick(), "(1 so far)")
    shutil.copy(unused_image(rank=1), folder / "train" / "benign")  # still arriving: the count starts again
    request = ticks.retrain()
    assert f"{4 * PER_CLASS + 2} files" in ticks.tick().skip_message
    assert request.tags[SOURCE_DIGEST_TAG] == ticks.trained


def test_a_change_undone_before_it_settled_retrains_nothing(ticks, folder):
    baseline = ticks.trained
    added = folder / "train" / "benign" / "by-mistake.jpg"
    shutil.copy(unused_image(), added)
    skipped(ticks.tick(), "(1 so far)")
    added.unlink()
    skipped(ticks.tick(), "no change")
    assert json.loads(ticks.cursor) == {"trained": baseline}


def test_the_quiet_period_is_configurable(instance, folder, monkeypatch):
    patient = Ticks(instance, RawImageSource(location=str(folder)), sensor=retrain_sensor(RETRAIN_INTERVAL_SECONDS, quiet_ticks=3))
    patient.tick()
    shutil.copy(unused_image(), folder / "train" / "benign")
    patient.retrain(quiet_ticks=3)
    monkeypatch.setenv("SKIN_CANCER_RETRAIN_QUIET_TICKS", "4")
    assert retrain_quiet_ticks() == 4
    for wrong in ("0", "two", "٣"):
        monkeypatch.setenv("SKIN_CANCER_RETRAIN_QUIET_TICKS", wrong)
        with pytest.raises(ValueError, match="SKIN_CANCER_RETRAIN_QUIET_TICKS"):
            retrain_quiet_ticks()


@pytest.mark.parametrize("change", ["rewritten", "removed", "moved to the other class"])
def test_a_changed_image_retrains(ticks, folder, change):
    image = sorted((folder / "train" / "benign").iterdir())[0]
    if change == "rewritten":
        image.write_bytes(unused_image().read_bytes())
    elif change == "removed":
        image.unlink()
    else:
        image.rename(folder / "train" / "malignant" / image.name)
    ticks.retrain()


def test_images_beyond_the_profiles_cap_are_not_trained_on_so_they_do_not_retrain(instance, folder):
    capped = Profile(name="capped", image_size=64, max_images_per_class=PER_CLASS)
    ticks = Ticks(instance, RawImageSource(location=str(folder)), capped)
    ticks.tick()
    shutil.copy(unused_image(rank=1), folder / "train" / "benign" / "zz-sorted-last.jpg")
    skipped(ticks.tick(), "no change")
    shutil.copy(unused_image(rank=1), folder / "train" / "benign" / "00-sorted-first.jpg")
    ticks.retrain()


# QUEUED is in the same list, but a queued run cannot be added without a code location's origin.
@pytest.mark.parametrize("status", [status for status in UNFINISHED if status != dg.DagsterRunStatus.QUEUED])
def test_a_change_during_an_unfinished_train_and_elect_retrains_once_after_it(ticks, folder, instance, status):
    baseline = ticks.trained
    run = dg.DagsterRun(job_name=train_and_elect.name, run_id=str(uuid.uuid4()), status=status)
    instance.add_run(run)
    shutil.copy(unused_image(), folder / "train" / "benign")
    skipped(ticks.tick(), "(1 so far)")
    for _ in range(2):
        skipped(ticks.tick(), f"retraining once train_and_elect run {run.run_id} ends")
        assert ticks.trained == baseline
    instance.report_run_failed(run)
    ticks.retrain(quiet_ticks=1)  # settled while the run was unfinished: retrains at once
    skipped(ticks.tick(), "no change")


def test_an_unreadable_source_asks_nothing_and_names_it(instance, tmp_path, folder):
    missing = tmp_path / "not-there"
    skipped(Ticks(instance, RawImageSource(location=str(missing))).tick(), f"data folder {missing} does not exist")
    shutil.rmtree(folder / "test" / "malignant")
    ticks = Ticks(instance, RawImageSource(location=str(folder)))
    skipped(ticks.tick(), f"no images in {folder}/test/malignant")
    assert ticks.cursor is None  # the first evaluation comes once the source can be listed


def test_a_bucket_retrains_on_an_added_or_rewritten_object(instance, folder, s3_server, bucket):
    location = f"s3://{bucket}/data"
    upload(location, folder, s3_server.client())
    ticks = Ticks(instance, RawImageSource(location=location, s3=s3_server.resource()))
    skipped(ticks.tick(), f"first evaluation: {4 * PER_CLASS} files in {location}")
    skipped(ticks.tick(), "no change")

    key = "data/train/benign/added.jpg"
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=unused_image().read_bytes())
    ticks.retrain()
    skipped(ticks.tick(), "no change")
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=unused_image(rank=1).read_bytes())  # a new ETag
    ticks.retrain()


def test_the_interval_and_the_off_switch_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("SKIN_CANCER_RETRAIN_SECONDS", raising=False)
    assert retrain_interval() == RETRAIN_INTERVAL_SECONDS
    monkeypatch.setenv("SKIN_CANCER_RETRAIN_SECONDS", "300")
    assert retrain_interval() == 300
    monkeypatch.setenv("SKIN_CANCER_RETRAIN_SECONDS", "off")
    assert retrain_interval() is None
    for wrong in ("0", "soon", "-5"):
        monkeypatch.setenv("SKIN_CANCER_RETRAIN_SECONDS", wrong)
        with pytest.raises(ValueError, match=f"SKIN_CANCER_RETRAIN_SECONDS='{wrong}': give a whole number"):
            retrain_interval()

    running = build_defs(PROFILES["smoke"], retrain_every=300).resolve_sensor_def("retrain_on_new_data")
    assert (running.job_name, running.default_status, running.minimum_interval_seconds) == (
        train_and_elect.name, dg.DefaultSensorStatus.RUNNING, 300,
    )
    stopped = build_defs(PROFILES["smoke"], retrain_every=None).resolve_sensor_def("retrain_on_new_data")
    assert stopped.default_status == dg.DefaultSensorStatus.STOPPED
