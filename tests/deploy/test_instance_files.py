"""Every Dagster instance file loads as a real instance, every class it names included: the
local default on SQLite, the Compose and local-Postgres ones on the test PostgreSQL. Each one,
and the Helm values, lets one election, one deploy and one monitoring run be in progress at a time."""

import re
import shutil

import dagster as dg
import pytest
from dagster._core.instance.config import PoolGranularity, dagster_instance_config
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
from dagster_docker import DockerRunLauncher
from dagster_postgres import PostgresRunStorage

from skin_cancer_assets.runs import DEPLOY, ELECTION, MONITORING, RUN_KIND
from tests.deploy.deploy_support import COMPOSE_FILE, INSTANCE_FILES, K8S, load_yaml

# What the Compose stack's compute log manager reads; nothing is contacted when it loads.
S3_ENV = {"AWS_BUCKET": "skin-cancer", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
# One run of each kind in progress at a time (the jobs' RUN_KIND tags), not one run in all.
KIND_LIMITS = [{"key": RUN_KIND, "value": kind, "limit": 1} for kind in (ELECTION, DEPLOY, MONITORING)]
RUNS_AT_ONCE = 3  # an election, a monitoring run and a deploy


def env_names(path) -> set[str]:
    return set(re.findall(r"env: ([A-Z][A-Z0-9_]+)", path.read_text()))


@pytest.mark.parametrize("name", sorted(INSTANCE_FILES))
def test_instance_file_loads_with_every_class_it_names(name, instance_env, monkeypatch, tmp_path):
    source = INSTANCE_FILES[name]
    assert source.exists(), f"{source} is missing"
    for variable, value in S3_ENV.items():
        monkeypatch.setenv(variable, value)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(source, home / "dagster.yaml")  # a SQLite instance writes beside its file

    dagster_instance_config(str(home))  # the schema check, with its own error messages
    with dg.DagsterInstance.from_config(str(home)) as instance:
        # Touch every configurable part so each named class is imported and configured.
        parts = [instance.run_storage, instance.event_log_storage, instance.schedule_storage,
                 instance.run_coordinator, instance.run_launcher, instance.compute_log_manager]
        loaded = {type(part).__name__ for part in parts}
        named = set(re.findall(r"^\s+class: (\w+)", source.read_text(), re.MULTILINE))
        assert named <= loaded, f"{source} names {sorted(named - loaded)}, but the instance loaded {sorted(loaded)}"
        if "postgres:" in source.read_text():
            assert {"PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage"} <= loaded
        instance.get_runs_count()


def test_local_default_stays_sqlite_with_the_default_launcher(tmp_path):
    shutil.copy(INSTANCE_FILES["local default"], tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert not isinstance(instance.run_storage, PostgresRunStorage)
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"


def test_compose_instance_runs_containers_on_the_code_locations_networks(instance_env, monkeypatch, tmp_path):
    for variable, value in S3_ENV.items():
        monkeypatch.setenv(variable, value)
    shutil.copy(INSTANCE_FILES["docker compose"], tmp_path / "dagster.yaml")
    compose = load_yaml(COMPOSE_FILE)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, DockerRunLauncher)
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
        # Runs and steps reach what the two code locations reach (the Docker API included), nothing more.
        code_networks = {compose["networks"][network]["name"] for location in ("code-location", "deploy-location")
                         for network in compose["services"][location]["networks"]}
        assert set(launcher.networks) == code_networks
    # Runs and steps get their variables from the daemon: each must be set there, and
    # everything the code location sees must reach them too.
    daemon_env = set(compose["services"]["daemon"]["environment"])
    code_env = set(compose["services"]["code-location"]["environment"]) - {"DAGSTER_CURRENT_IMAGE"}
    passed = set(launcher.env_vars)
    assert passed <= daemon_env, f"not set on the daemon: {sorted(passed - daemon_env)}"
    assert code_env <= passed, f"not passed to run containers: {sorted(code_env - passed)}"
    assert env_names(INSTANCE_FILES["docker compose"]) <= daemon_env


def test_local_postgres_instance_reads_what_start_sh_prints(postgres_cluster):
    assert env_names(INSTANCE_FILES["local postgres"]) <= set(postgres_cluster)


@pytest.mark.parametrize("name", sorted(INSTANCE_FILES))
def test_instance_file_runs_one_run_of_each_kind_at_a_time(name, instance_env, monkeypatch, tmp_path):
    for variable, value in S3_ENV.items():
        monkeypatch.setenv(variable, value)
    shutil.copy(INSTANCE_FILES[name], tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.tag_concurrency_limits == KIND_LIMITS
        assert concurrency.run_queue_config.max_concurrent_runs == RUNS_AT_ONCE
        # The election step's pool: one slot, claimed per step, given back if its run dies.
        assert concurrency.pool_config.default_pool_limit == 1
        assert concurrency.pool_config.pool_granularity == PoolGranularity.OP
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0


def test_helm_values_set_the_same_limits_in_the_charts_concurrency_section():
    values = load_yaml(K8S / "values.yaml")
    concurrency = values["concurrency"]
    assert concurrency["enabled"]
    assert concurrency["runs"] == {"maxConcurrentRuns": RUNS_AT_ONCE, "tagConcurrencyLimits": KIND_LIMITS}
    assert concurrency["pools"] == {"defaultLimit": 1, "granularity": "op"}
    # Dagster refuses run limits set both here and in the run coordinator's config.
    assert "config" not in values["dagsterDaemon"]["runCoordinator"]


@pytest.mark.parametrize("name", sorted(INSTANCE_FILES))
def test_instance_file_names_no_private_dagster_module(name):
    """Private modules move between releases without notice; the public `run_queue:` sets the queue."""
    assert "dagster._" not in INSTANCE_FILES[name].read_text()
