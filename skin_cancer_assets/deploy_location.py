"""The deploy code location (`skin_cancer_deploy` in workspace.yaml): the serving group, its job and
the two sensors that roll a champion out to serving.

It is a location of its own so that a deploy run's process imports Dagster and the deploy target
only, not TensorFlow, MLflow or the training code: the run starts in about a second where the
training location takes eleven. It reads the champion from the registry's alias over HTTP
(resources/deploy.py) and watches `champion_model`, the training location's asset, across
locations: the lineage joins in the UI.

Serving follows the alias at once after an election promotes a version, and by convergence
whenever serving reports a version other than the alias's (a failed deploy, an operator moving
the alias, serving restarted or unreachable during a deploy).
"""

import json
import time

import dagster as dg

from resources.deploy import DeployError, ServingTarget
from skin_cancer_assets.assets.deployment import serving_deployment
from skin_cancer_assets.election import PROMOTED
from skin_cancer_assets.environment import serving_target
from skin_cancer_assets.runs import DEPLOY, RUN_KIND, UNFINISHED

CONVERGENCE_INTERVAL_SECONDS = 15
"""How often serving's version is compared with the alias. A lag seen on two ticks in a row
deploys (one tick could fall between an election's alias move and its own deploy run), so
serving is behind for at most two intervals plus one deploy once it answers again."""
BACKOFF_SECONDS = (0, 60, 120, 300, 900)
"""Wait before the n-th deploy for the same champion while serving still lags: a serving that
cannot load the model gets a deploy now and then, not a storm."""

deploy_champion = dg.define_asset_job(
    "deploy_champion",
    selection=dg.AssetSelection.assets("serving_deployment"),
    description="Roll the current champion out to serving and wait until serving reports it.",
    tags={RUN_KIND: DEPLOY},
    executor_def=dg.in_process_executor,  # one step: no second process to start, and retries start on time
)


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


defs = dg.Definitions(
    assets=[serving_deployment],
    jobs=[deploy_champion],
    sensors=[redeploy_on_new_champion, serving_follows_the_alias],
    resources={"serving_target": serving_target()},
)
