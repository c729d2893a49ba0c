"""New data retrains: a change in the data source asks for one `train_and_elect` run once the
source has settled. The sensors that roll a new champion out to serving are the deploy
location's (deploy_location.py)."""

import json

import dagster as dg

from resources.image_source import ImageSourceError, RawImageSource
from skin_cancer_assets.assets.data import SOURCE_DIGEST_TAG
from skin_cancer_assets.environment import RETRAIN_INTERVAL_SECONDS, RETRAIN_QUIET_TICKS
from skin_cancer_assets.jobs import train_and_elect
from skin_cancer_assets.preprocessing import first_per_class, listing_digest
from skin_cancer_assets.profiles import Profile
from skin_cancer_assets.runs import UNFINISHED

DATA_VERSION_TAG = "dagster/data_version"
"""The tag Dagster reads an observation's data version from (`AssetObservation.data_version`)."""


def retrain_sensor(every_seconds: int | None, quiet_ticks: int = RETRAIN_QUIET_TICKS) -> dg.SensorDefinition:
    """`retrain_on_new_data`, listing the data source every `every_seconds` (None: it starts
    stopped) and retraining once a change has been seen on `quiet_ticks` evaluations in a row."""
    if quiet_ticks < 1:
        raise ValueError(f"quiet_ticks={quiet_ticks}: a change must be seen at least once")

    @dg.sensor(
        name="retrain_on_new_data",
        job=train_and_elect,
        default_status=dg.DefaultSensorStatus.RUNNING if every_seconds else dg.DefaultSensorStatus.STOPPED,
        minimum_interval_seconds=every_seconds or RETRAIN_INTERVAL_SECONDS,
    )
    def retrain_on_new_data(context: dg.SensorEvaluationContext, image_source: RawImageSource, profile: Profile):
        """One `train_and_elect` run per settled new state of the images the profile trains on.

        The state is the listing digest: names, sizes and modification times (ETags on S3) of the
        files `raw_images` would read, so an added, removed, renamed or rewritten file is seen
        without opening one. The cursor holds the digest last acted on (`trained`) and the change
        being watched (`pending`, seen on `ticks` evaluations in a row); a change retrains only
        when the same digest was seen `quiet_ticks` times, so a half-finished upload does not. The
        run carries the digest as a tag and `raw_images` fails if the source no longer matches it;
        the run key is made of the digest, so a digest never retrains twice. The first evaluation
        only records the digest: data present before the sensor ran counts as trained. While a
        `train_and_elect` run is unfinished nothing is asked, so a change seen meanwhile retrains
        once after it. A retrain comes with an observation of `raw_images` whose data version is
        the digest: the asset's events show when new data was seen, before the run materializes it.
        """
        try:
            stamped = first_per_class(image_source.list_stamped_images(), profile.max_images_per_class)
        except ImageSourceError as error:
            return dg.SkipReason(f"{error}; looking again at the next evaluation")
        digest = listing_digest(stamped)
        seen = f"{len(stamped)} files in {image_source.location} (listing digest {digest[:12]})"
        if context.cursor is None:
            context.update_cursor(json.dumps({"trained": digest}))
            return dg.SkipReason(f"first evaluation: {seen} taken as trained; a change from now on retrains")
        state = json.loads(context.cursor)
        if digest == state["trained"]:
            if "pending" in state:
                context.update_cursor(json.dumps({"trained": digest}))
            return dg.SkipReason(f"no change: {seen}")
        ticks = state["ticks"] + 1 if state.get("pending") == digest else 1
        if ticks < quiet_ticks:
            context.update_cursor(json.dumps({**state, "pending": digest, "ticks": ticks}))
            return dg.SkipReason(f"changed: {seen}; waiting until it is the same on {quiet_ticks} evaluations in a row ({ticks} so far)")
        unfinished = context.instance.get_runs(dg.RunsFilter(job_name=train_and_elect.name, statuses=UNFINISHED), limit=1)
        if unfinished:
            context.update_cursor(json.dumps({**state, "pending": digest, "ticks": ticks}))
            return dg.SkipReason(f"changed: {seen}; retraining once train_and_elect run {unfinished[0].run_id} ends")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=f"data-{digest}", tags={SOURCE_DIGEST_TAG: digest})],
            asset_events=[
                dg.AssetObservation(
                    "raw_images",
                    metadata={"source": image_source.location, "files": len(stamped), "listing_digest": digest},
                    tags={DATA_VERSION_TAG: digest},
                )
            ],
            cursor=json.dumps({"trained": digest}),
        )

    return retrain_on_new_data
