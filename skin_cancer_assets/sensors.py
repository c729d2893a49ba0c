"""New data retrains, and serving follows the champion alias.

A change in the data source asks for one `train_and_elect` run once the source has settled. Serving follows the alias at
once after an election promotes a version, and by convergence whenever serving reports a
version other than the alias's (a failed deploy, an operator moving the alias, serving
restarted or unreachable during a deploy)."""

import json
import time

import dagster as dg

from resources.deploy import DeployError, ServingTarget
from resources.image_source import ImageSourceError, RawImageSource
from skin_cancer_assets.assets.data import SOURCE_DIGEST_TAG
from skin_cancer_assets.election import PROMOTED
from skin_cancer_assets.environment import RETRAIN_INTERVAL_SECONDS, RETRAIN_QUIET_TICKS
from skin_cancer_assets.jobs import deploy_champion, train_and_elect
from skin_cancer_assets.preprocessing import first_per_class, listing_digest
from skin_cancer_assets.profiles import Profile

DATA_VERSION_TAG = "dagster/data_version"
"""The tag Dagster reads an observation's data version from (`AssetObservation.data_version`)."""

CONVERGENCE_INTERVAL_SECONDS = 15
"""How often serving's version is compared with the alias. A lag seen on two ticks in a row
deploys (one tick could fall between an election's alias move and its own deploy run), so
serving is behind for at most two intervals plus one deploy once it answers again."""
BACKOFF_SECONDS = (0, 60, 120, 300, 900)
"""Wait before the n-th deploy for the same champion while serving still lags: a serving that
cannot load the model gets a deploy now and then, not a storm."""
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
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


@dg.asset_sensor(
    asset_key=dg.AssetKey("champion_model"),
    job=deploy_champion,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=1,  # as often as the daemon's sensor loop turns (every 5 s)
)
def redeploy_on_new_champion(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    """One deploy per election that promoted a version; a kept or rejected champion deploys nothing.

    The sensor's cursor (the materialization's storage id, kept in the instance across daemon
    restarts) and the run key both make it one. Anything else that leaves serving behind the
    alias is the convergence sensor's.
    """
    metadata = asset_event.asset_materialization.metadata if asset_event.asset_materialization else {}
    decision = metadata.get("decision")
    decision = decision.value if decision else None
    if decision != PROMOTED:
        return dg.SkipReason(f"the champion materialization decided {decision!r}: the alias did not move")
    version = metadata.get("champion_version")
    return dg.RunRequest(
        run_key=f"champion-{asset_event.run_id}-{asset_event.timestamp}",
        tags={"champion_version": str(version.value) if version else "unknown"},
    )


@dg.sensor(
    job=deploy_champion,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=CONVERGENCE_INTERVAL_SECONDS,
)
def serving_follows_the_alias(context: dg.SensorEvaluationContext, serving_target: ServingTarget):
    """Deploy when serving is reachable and reports a version other than the one the alias names.

    Nothing is requested while a deploy is queued, running or being canceled. The cursor keeps
    the lag being watched: which champion, when it was first seen (`since`), how many deploys it
    got and when the last was asked for (`at`). The run key is made of the lag itself (champion,
    `since`, attempt), so a tick evaluated twice asks once, and a cleared cursor starts a new lag
    whose keys Dagster has not seen.
    """
    try:
        served = serving_target.served_version()
    except DeployError as error:
        return dg.SkipReason(f"{error}; the deploy waits until serving answers")
    try:
        champion = serving_target.champion_version()
    except DeployError as error:
        return dg.SkipReason(f"{error}; the deploy waits until the registry answers")
    if champion is None:
        return dg.SkipReason("no champion yet")
    state = {"champion": None, "since": 0.0, "attempts": 0, "at": 0.0, **json.loads(context.cursor or "{}")}
    if served == champion:
        if state["champion"] is not None:
            context.update_cursor(json.dumps({**state, "champion": None, "attempts": 0}))
        return dg.SkipReason(f"serving reports version {champion}, the champion")
    if context.instance.get_runs(dg.RunsFilter(job_name=deploy_champion.name, statuses=UNFINISHED), limit=1):
        return dg.SkipReason(f"serving reports version {served}, the champion is {champion}: a deploy is under way")
    if state["champion"] != champion:
        now = time.time()
        context.update_cursor(json.dumps({"champion": champion, "since": now, "attempts": 0, "at": now}))
        return dg.SkipReason(f"serving reports version {served}, the champion is {champion}: deploying if it still lags next tick")
    wait = BACKOFF_SECONDS[min(state["attempts"], len(BACKOFF_SECONDS) - 1)]
    if time.time() < state["at"] + wait:
        return dg.SkipReason(f"serving still lags after {state['attempts']} deploys of version {champion}; the next in {wait}s")
    attempt = state["attempts"] + 1
    context.update_cursor(json.dumps({**state, "attempts": attempt, "at": time.time()}))
    return dg.RunRequest(
        run_key=f"serving-lags-v{champion}-since-{state['since']:.3f}-attempt-{attempt}",
        tags={"champion_version": champion, "served_version": str(served)},
    )
