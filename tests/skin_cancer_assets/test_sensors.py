"""The deploy sensors tick by tick on an ephemeral instance.

`redeploy_on_new_champion`: real materializations of `champion_model` (from a stand-in asset of that
key, with the election's metadata) and the sensor as the daemon evaluates it, through the deploy
location's definitions. `serving_follows_the_alias`: the real sensor and the real LocalServingTarget
asking over HTTP, answered by a stand-in on loopback that plays both serving's `GET /model` and the
MLflow registry's `registered-models/get` (a real serving would need a trained model; the redeploy
suite drives one)."""

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pytest

from resources.deploy import PROBE_TIMEOUT_SECONDS, LocalServingTarget
from skin_cancer_assets.election import KEPT, PROMOTED, REJECTED
from skin_cancer_assets.deploy_location import BACKOFF_SECONDS, defs, deploy_champion, redeploy_on_new_champion, serving_follows_the_alias
from skin_cancer_contract.registry import CHAMPION_ALIAS, REGISTERED_MODEL_NAME
from tests.helpers import send_json

REGISTRY_PATH = "/api/2.0/mlflow/registered-models/get"


class StandIn:
    """Serving reports `served`; the registry's alias names `champion` (None: no model registered),
    or the registry answers `registry_status` after `registry_delay` seconds."""

    def __init__(self):
        self.served, self.champion = "1", "2"
        self.registry_status, self.registry_delay = 200, 0.0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlsplit(self.path)
                if url.path == "/model":
                    send_json(self, 200, {"version": stand_in.served})
                elif url.path == REGISTRY_PATH and parse_qs(url.query)["name"] == [REGISTERED_MODEL_NAME]:
                    time.sleep(stand_in.registry_delay)
                    if stand_in.registry_status != 200:
                        send_json(self, stand_in.registry_status, {"error_code": "TEMPORARILY_UNAVAILABLE"})
                    elif stand_in.champion is None:
                        send_json(self, 404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})
                    else:
                        aliases = [{"alias": CHAMPION_ALIAS, "version": stand_in.champion}]
                        send_json(self, 200, {"registered_model": {"name": REGISTERED_MODEL_NAME, "aliases": aliases}})
                else:
                    send_json(self, 404, {"error_code": "ENDPOINT_NOT_FOUND"})

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def stand_in():
    server = StandIn()
    yield server
    server.stop()


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


class Ticks:
    """Evaluates the sensor as the daemon does: each tick starts from the cursor the last one left."""

    def __init__(self, instance: dg.DagsterInstance, url: str):
        self.instance, self.cursor = instance, None
        self.target = LocalServingTarget(serving_url=url, mlflow_tracking_uri=url, admin_token="unused")

    def tick(self, cursor: str | None = None):
        context = dg.build_sensor_context(
            instance=self.instance, cursor=cursor or self.cursor, resources={"serving_target": self.target}
        )
        result = serving_follows_the_alias(context)
        self.cursor = context.cursor
        return result

    def backdate_last_deploy(self, seconds: float) -> None:
        state = json.loads(self.cursor)
        self.cursor = json.dumps({**state, "at": state["at"] - seconds})


def skipped(result, reason: str) -> None:
    assert isinstance(result, dg.SkipReason), result
    assert reason in result.skip_message, result.skip_message


def test_a_lag_deploys_when_seen_on_two_ticks_and_a_repeated_tick_asks_once(stand_in, instance):
    ticks = Ticks(instance, stand_in.url)
    skipped(ticks.tick(), "serving reports version 1, the champion is 2: deploying if it still lags next tick")
    seen = ticks.cursor
    request = ticks.tick()
    assert isinstance(request, dg.RunRequest)
    assert request.tags == {"champion_version": "2", "served_version": "1"}
    assert ticks.tick(cursor=seen).run_key == request.run_key  # the same tick again: the same key, so one run


def test_deploys_for_the_same_lag_back_off_and_each_has_its_own_key(stand_in, instance):
    ticks = Ticks(instance, stand_in.url)
    ticks.tick()
    keys = [ticks.tick().run_key]
    for attempt, wait in enumerate(BACKOFF_SECONDS[1:3], start=1):
        skipped(ticks.tick(), f"serving still lags after {attempt} deploys of version 2; the next in {wait}s")
        ticks.backdate_last_deploy(wait - 5)
        skipped(ticks.tick(), f"the next in {wait}s")
        ticks.backdate_last_deploy(5)
        keys.append(ticks.tick().run_key)
    assert len(set(keys)) == 3 and all(key.startswith("serving-lags-v2-") for key in keys)


def test_serving_catching_up_resets_the_lag_and_a_cleared_cursor_gets_new_keys(stand_in, instance):
    ticks = Ticks(instance, stand_in.url)
    ticks.tick()
    first = ticks.tick().run_key
    stand_in.served = "2"
    skipped(ticks.tick(), "serving reports version 2, the champion")
    assert json.loads(ticks.cursor)["champion"] is None

    stand_in.champion = "3"  # a new lag: two ticks again, from the first attempt
    skipped(ticks.tick(), "deploying if it still lags next tick")
    assert ticks.tick().run_key.startswith("serving-lags-v3-")

    stand_in.champion = "2"
    stand_in.served = "1"
    ticks.cursor = None  # the cursor cleared (a sensor reset in the UI): the same lag as the first, new keys
    ticks.tick()
    assert ticks.tick().run_key != first


@pytest.mark.parametrize("status", [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING])
def test_nothing_is_asked_while_a_deploy_is_under_way(stand_in, instance, status):
    instance.add_run(dg.DagsterRun(job_name=deploy_champion.name, run_id=str(uuid.uuid4()), status=status))
    ticks = Ticks(instance, stand_in.url)
    for _ in range(2):
        skipped(ticks.tick(), "serving reports version 1, the champion is 2: a deploy is under way")


def test_no_champion_deploys_nothing(stand_in, instance):
    stand_in.champion = None
    skipped(Ticks(instance, stand_in.url).tick(), "no champion yet")


@pytest.mark.parametrize("status, delay", [(503, 0.0), (200, PROBE_TIMEOUT_SECONDS + 5)])
def test_a_failing_or_silent_registry_ends_the_tick_at_once_naming_it(stand_in, instance, status, delay):
    stand_in.registry_status, stand_in.registry_delay = status, delay
    started = time.monotonic()
    result = Ticks(instance, stand_in.url).tick()
    assert time.monotonic() - started < PROBE_TIMEOUT_SECONDS + 2
    skipped(result, f"{stand_in.url} (MLFLOW_TRACKING_URI)")
    assert result.skip_message.endswith("the deploy waits until the registry answers")


def test_an_unreachable_serving_deploys_nothing(instance):
    skipped(Ticks(instance, "http://127.0.0.1:9").tick(), "the deploy waits until serving answers")


def materialize_election(instance: dg.DagsterInstance, decision: str, version: int) -> dg.EventLogEntry:
    """One run materializing `champion_model` with the election's metadata; returns its materialization."""

    @dg.asset(name="champion_model")
    def stand_in() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"decision": decision, "champion_version": version})

    result = dg.materialize([stand_in], instance=instance)
    (event,) = instance.fetch_materializations(dg.AssetKey("champion_model"), limit=1).records
    assert event.run_id == result.run_id
    return event.event_log_entry


class ChampionTicks:
    """Evaluates `redeploy_on_new_champion` as the daemon does, from the deploy location's definitions,
    each tick from the cursor the last one left."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance, self.cursor = instance, None
        self.sensor = defs.resolve_sensor_def(redeploy_on_new_champion.name)

    def tick(self):
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, definitions=defs)
        data = self.sensor.evaluate_tick(context)
        self.cursor = data.cursor or self.cursor
        return data


def test_a_promoting_election_asks_one_deploy_champion_run_for_the_version_it_promoted(instance):
    ticks = ChampionTicks(instance)
    assert ticks.sensor.job_name == deploy_champion.name
    assert not ticks.tick().run_requests  # no election yet
    promoted = materialize_election(instance, PROMOTED, 3)
    (request,) = ticks.tick().run_requests
    assert request.tags["champion_version"] == "3"
    assert request.run_key == f"champion-{promoted.run_id}-{promoted.timestamp}"  # this materialization's deploy
    assert not ticks.tick().run_requests  # the same materialization on the next tick: nothing more


def test_an_election_that_kept_or_rejected_asks_nothing_and_the_next_promotion_deploys_its_own_version(instance):
    ticks = ChampionTicks(instance)
    ticks.tick()
    for decision in (KEPT, REJECTED):
        materialize_election(instance, decision, 3)
        data = ticks.tick()
        assert not data.run_requests and decision in data.skip_message
    promoted = materialize_election(instance, PROMOTED, 4)
    (request,) = ticks.tick().run_requests
    assert (request.tags["champion_version"], request.run_key) == ("4", f"champion-{promoted.run_id}-{promoted.timestamp}")
