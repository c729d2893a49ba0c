"""The Dagster UI in a real Chromium: the whole lineage on the asset graph, and a run from its button.

A real `dagster-webserver` and `dagster-daemon` run the repository's workspace on the smoke
profile with the repository's dagster.yaml, against the test MLflow server.
"""

import os
import re
import shutil
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from skin_cancer_assets import deploy_location
from skin_cancer_assets.definitions import build_defs
from skin_cancer_assets.model_zoo import ZOO
from skin_cancer_assets.profiles import profile_named
from tests.helpers import Service, start_dagster

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
SHOWN_IN_THE_GRAPH = ["raw_images", *(spec.name for spec in ZOO), "champion_model", "serving_deployment"]
"""Asset names the zoomed-out graph must show: the lineage's start, each model and its end."""
TIMEOUT_MS = 120_000
RUN_TIMEOUT_S = 600
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}

LOCATION_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
RUNS_QUERY = """
query Runs($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results { runId status } } } }
"""
ASSET_NODES_QUERY = """
{ assetNodes { assetKey { path } groupName dependencyKeys { path } } }
"""
LATEST_MATERIALIZATION_QUERY = """
query Asset($key: AssetKeyInput!) { assetOrError(assetKey: $key) {
    ... on Asset { assetMaterializations(limit: 1) { runId } } } }
"""


def graphql(url: str, query: str, **variables) -> dict:
    response = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def wait_for_location(url: str, services: list[Service], timeout: float = 300) -> None:
    """Until the webserver has loaded the code location; fail with its error if it cannot."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = graphql(url, LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
        if entries and entries[0]["loadStatus"] == "LOADED":
            location = entries[0]["locationOrLoadError"]
            if location["__typename"] == "PythonError":
                pytest.fail(f"code location failed to load: {location['message']}")
            return
        time.sleep(1)
    pytest.fail(f"code location not loaded within {timeout:.0f}s\n{services[0].log_tail()}")


@pytest.fixture(scope="module")
def dagster_ui(mlflow_server, tmp_path_factory):
    """URL of a webserver (with a daemon) on the smoke profile and a fresh DAGSTER_HOME."""
    root = tmp_path_factory.mktemp("dagster-ui")
    env = {
        "SKIN_CANCER_PROFILE": "smoke",
        "MLFLOW_TRACKING_URI": mlflow_server,
        "MLFLOW_EXPERIMENT_NAME": "dagster-ui-test",
        "SKIN_CANCER_STATE": str(root / "state"),
        "SERVING_ADMIN_TOKEN": "test-token",
    }
    dagster = None
    try:
        with start_dagster(root / "dagster_home", root, env) as dagster:
            wait_for_location(dagster.url, [dagster.webserver])
            yield dagster.url
    finally:
        if dagster is not None:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for service in (dagster.webserver, dagster.daemon):
                shutil.copy(service.log_path, ARTIFACTS / service.log_path.name)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    yield context.new_page()
    context.close()


def open_page(page, url: str) -> None:
    """Open a UI page and skip the first-visit community dialog when it shows."""
    page.goto(url)
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=10_000)
    except PlaywrightTimeout:  # dismissed on an earlier visit
        return
    skip.click()


def show_whole_lineage(page, url: str) -> None:
    """The lineage page with every group expanded, zoomed out until the graph's ends are in view."""
    page.set_viewport_size({"width": 1600, "height": 3200})  # the data group is a tall column of assets
    open_page(page, f"{url}/asset-groups")
    graph = page.get_by_text("Global asset lineage")
    expect(graph).to_be_visible(timeout=TIMEOUT_MS)
    page.keyboard.press("Alt+e")  # the graph's "Expand all groups" shortcut
    zoom_out = page.locator("button", has=page.get_by_role("img", name="zoom_out"))
    zoom_out.click()
    for asset in SHOWN_IN_THE_GRAPH:
        expect(page.get_by_text(asset, exact=True).first).to_be_visible(timeout=TIMEOUT_MS)


def screenshot(page, name: str, docs: str | None = None) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    if docs and os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        (REPO / "docs" / "images").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, REPO / "docs" / "images" / docs)


def test_asset_graph_shows_the_whole_lineage(page, dagster_ui):
    served = {
        node["assetKey"]["path"][-1]: (node["groupName"], {key["path"][-1] for key in node["dependencyKeys"]})
        for node in graphql(dagster_ui, ASSET_NODES_QUERY)["assetNodes"]
    }
    defined = {
        spec.key.path[-1]: (spec.group_name, {dep.asset_key.path[-1] for dep in spec.deps})
        for spec in dg.Definitions.merge(build_defs(profile_named("smoke")), deploy_location.defs).resolve_all_asset_specs()
    }
    assert served == defined  # every asset, its group and its upstream assets, as the webserver serves them
    show_whole_lineage(page, dagster_ui)
    screenshot(page, "asset-graph")


def test_materialize_button_runs_raw_images(page, dagster_ui):
    open_page(page, f"{dagster_ui}/assets/raw_images")
    page.get_by_role("button", name=re.compile(r"Materialize$")).click()

    deadline = time.monotonic() + RUN_TIMEOUT_S
    runs = []
    while time.monotonic() < deadline:
        runs = graphql(dagster_ui, RUNS_QUERY, filter={})["runsOrError"]["results"]
        if runs and runs[0]["status"] in FINISHED:
            break
        time.sleep(2)
    assert len(runs) == 1, f"expected the one run the button launched, got {runs}"
    run = runs[0]
    page.goto(f"{dagster_ui}/runs/{run['runId']}")
    expect(page.get_by_text("RUN_SUCCESS").or_(page.get_by_text("RUN_FAILURE")).first).to_be_visible(timeout=TIMEOUT_MS)
    screenshot(page, "raw-images-run")
    assert run["status"] == "SUCCESS", f"run {run['runId']} ended {run['status']}; see {ARTIFACTS}/*.log"
    expect(page.get_by_text("RUN_SUCCESS").first).to_be_visible()

    latest = graphql(dagster_ui, LATEST_MATERIALIZATION_QUERY, key={"path": ["raw_images"]})
    assert latest["assetOrError"]["assetMaterializations"][0]["runId"] == run["runId"]

    show_whole_lineage(page, dagster_ui)
    screenshot(page, "asset-graph-materialized", docs="dagster-asset-graph.png")
