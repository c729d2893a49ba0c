"""Serving follows the champion by itself: real webserver, daemon (both sensors on), uvicorn and MLflow.

One platform for the module, shared by tests that may run in any order (pytest-randomly): each
leaves serving on the alias and looks only at the deploy runs it caused. A real election while 8
clients post images, the alias moved by hand, serving stopped during a deploy, and the daemon
restarted between a promotion and its deploy.
"""

import time

import dagster as dg
import mlflow
import pytest

from skin_cancer_assets.election import KEPT
from skin_cancer_contract.registry import CHAMPION_ALIAS, REGISTERED_MODEL_NAME
from tests.skin_cancer_assets.pipeline import (
    ELECTION,
    champion_alias_restored,
    champion_version,
    materialize_graph,
    offer_candidate,
    register_candidate,
)
from tests.skin_cancer_assets.redeploy_support import (
    ASSET_SENSOR,
    CONVERGENCE_SENSOR,
    Platform,
    PostingClients,
    bring_up,
    crown_a_beatable_champion,
    deploy_runs,
    latest_champion_timestamp,
    promote,
    register_copy,
    ticks,
    wait_for,
    wait_for_run,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(smoke_champion, tmp_path_factory):
    client = mlflow.MlflowClient(smoke_champion["tracking_uri"])
    with (
        champion_alias_restored(client),
        bring_up(tmp_path_factory.mktemp("redeploy"), client.tracking_uri, before_serving=crown_a_beatable_champion) as platform,
    ):
        yield platform


def elect_a_better_champion(platform: Platform) -> str:
    """A real election that promotes a better candidate: the champion's model registered again
    with validation probabilities that separate the classes, offered as every model class's candidate."""
    better = register_candidate(platform.client, "redeploy", platform.model_folder, platform.validation, 1.0)
    offer_candidate(better)
    result = materialize_graph(platform.dagster.home, selection=ELECTION, instance=platform.instance)
    assert result.output_for_node("champion_model")["version"] == better["version"]
    return better["version"]


def test_a_better_champion_is_served_without_failed_requests(platform):
    instance, before = platform.instance, {run.run_id for run in deploy_runs(platform.instance)}
    previous = champion_version(platform.client)
    with PostingClients(platform.serving.url, count=8) as clients:
        better = elect_a_better_champion(platform)
        elected = latest_champion_timestamp(instance)
        swapped = wait_for(lambda: clients.every_answer_since(better), f"every request answered by v{better}", 420, platform.logs)
        time.sleep(2)  # answers after the swap, too
    print(f"redeploy: {swapped - elected:.1f}s from the champion materialization to every request answered by v{better}")

    answers = clients.all_answers
    assert not clients.failed, f"{len(clients.failed)} of {len(answers)} requests failed, e.g. {clients.failed[:3]}"
    assert {answer.version for answer in answers} == {previous, better}, "the clients did not see the swap"
    for number, client_answers in enumerate(clients.answers):
        versions = [answer.version for answer in client_answers]
        after_the_swap = versions[versions.index(better):]
        assert set(after_the_swap) == {better}, f"client {number} got the old version after the new one: {versions}"

    (run,) = wait_for(lambda: [r for r in deploy_runs(instance) if r.run_id not in before], "a deploy run", 120, platform.logs)
    run = wait_for_run(instance, run.run_id, 300, platform.logs)
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/sensor_name"] == ASSET_SENSOR
    deployed = instance.get_latest_materialization_event(dg.AssetKey("serving_deployment"))
    assert deployed.asset_materialization.metadata["version"].value == int(better)

    # Two more ticks of each sensor: the same materialization deploys once, and convergence sees nothing to do.
    finished = instance.get_run_record_by_id(run.run_id).end_time
    wait_for(lambda: len(ticks(instance, ASSET_SENSOR, after=finished)) >= 2, "two asset sensor ticks", 120, platform.logs)
    convergence = wait_for(lambda: ticks(instance, CONVERGENCE_SENSOR, after=finished)[1:], "two convergence ticks", 120, platform.logs)
    assert f"serving reports version {better}, the champion" in convergence[0].skip_reason
    assert [r.run_id for r in deploy_runs(instance) if r.run_id not in before] == [run.run_id]


def test_an_alias_moved_by_hand_reaches_serving(platform):
    """An operator's rollback in the MLflow UI: no election, no champion materialization."""
    instance, before = platform.instance, {run.run_id for run in deploy_runs(platform.instance)}
    version = register_copy(platform.client, champion_version(platform.client))
    moved = time.time()
    platform.client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, version)
    wait_for(lambda: platform.served_version() == version, f"serving reports v{version}", 240, platform.logs)
    print(f"convergence: serving answered with the alias's v{version} {time.time() - moved:.1f}s after the alias moved")

    new = [run for run in deploy_runs(instance) if run.run_id not in before]
    assert [run.tags["dagster/sensor_name"] for run in new] == [CONVERGENCE_SENSOR]
    assert wait_for_run(instance, new[0].run_id, 300, platform.logs).status == dg.DagsterRunStatus.SUCCESS


def test_serving_stopped_during_a_deploy_serves_the_alias_once_started_again(platform):
    instance, before = platform.instance, {run.run_id for run in deploy_runs(platform.instance)}
    platform.serving.stop()
    version = register_copy(platform.client, champion_version(platform.client))
    promote(instance, platform.client, version)

    (run,) = wait_for(lambda: [r for r in deploy_runs(instance, ASSET_SENSOR) if r.run_id not in before], "a deploy run", 120, platform.logs)
    wait_for(
        lambda: instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY),
        "the deploy failed once and waits to retry", 300, platform.logs,
    )
    platform.start_serving()  # nobody deploys by hand: the deploy's retries find serving again

    run = wait_for_run(instance, run.run_id, 300, platform.logs)
    assert run.status == dg.DagsterRunStatus.SUCCESS, platform.logs()
    assert platform.served_version() == version
    deployed = instance.get_latest_materialization_event(dg.AssetKey("serving_deployment"))
    assert deployed.asset_materialization.metadata["version"].value == int(version)


def test_the_asset_sensor_cursor_survives_a_daemon_restart(platform):
    """A promotion while the daemon is down deploys once when it is back; older materializations
    do not deploy again, and a champion that was kept deploys nothing."""
    instance, before = platform.instance, {run.run_id for run in deploy_runs(platform.instance)}
    platform.dagster.daemon.stop()
    version = register_copy(platform.client, champion_version(platform.client))
    promote(instance, platform.client, version)
    restarted = time.time()
    platform.dagster.start_daemon()

    (run,) = wait_for(lambda: [r for r in deploy_runs(instance) if r.run_id not in before], "a deploy run after the restart", 300, platform.logs)
    assert run.tags["dagster/sensor_name"] == ASSET_SENSOR
    assert wait_for_run(instance, run.run_id, 300, platform.logs).status == dg.DagsterRunStatus.SUCCESS
    assert platform.served_version() == version

    instance.report_runless_asset_event(
        dg.AssetMaterialization("champion_model", metadata={"decision": KEPT, "champion_version": int(version)})
    )
    kept = latest_champion_timestamp(instance)
    skipped = wait_for(lambda: ticks(instance, ASSET_SENSOR, after=kept)[1:], "two asset sensor ticks after the kept champion", 120, platform.logs)
    assert any(f"decided {KEPT!r}" in (tick.skip_reason or "") for tick in skipped)
    assert len(ticks(instance, ASSET_SENSOR, after=restarted)) >= 3
    assert [r.run_id for r in deploy_runs(instance) if r.run_id not in before] == [run.run_id]
