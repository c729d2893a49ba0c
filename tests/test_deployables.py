"""Each deployable installs what it runs: the lock's dependency groups, as the Dockerfiles sync them."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEPLOYABLES = {
    # Dockerfile: (dependency group, packages its image must not carry)
    "serving/Dockerfile": ("serving", {"dagster", "streamlit"}),
    "streamlit_app/Dockerfile": ("app", {"tensorflow", "keras", "dagster", "mlflow"}),
    "deploy/docker/Dockerfile.code": ("pipeline", {"streamlit"}),
}


def locked_packages(group: str) -> set[str]:
    """Names of every package `uv sync --locked --no-default-groups --group GROUP` installs."""
    uv = shutil.which("uv") or pytest.fail("uv is not on PATH (make install needs it too)")
    exported = subprocess.run(
        [uv, "export", "--locked", "--offline", "--no-default-groups", "--group", group, "--no-hashes", "--no-emit-project"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    return {re.split(r"[=<>\[; ]", line, maxsplit=1)[0].lower() for line in exported.splitlines() if line and line[0].isalnum()}


@pytest.mark.parametrize("dockerfile", DEPLOYABLES)
def test_each_image_syncs_only_its_own_group(dockerfile):
    group, forbidden = DEPLOYABLES[dockerfile]
    syncs = re.findall(r"uv sync [^\n\\]*", (REPO / dockerfile).read_text())
    assert syncs and all(f"--locked --no-default-groups --group {group}" in sync for sync in syncs), syncs
    installed = locked_packages(group)
    assert installed, f"group {group} installs nothing"
    assert not forbidden & installed, f"the {group} group pulls in {sorted(forbidden & installed)}"


def test_serving_group_carries_what_serving_and_the_mlflow_server_run():
    assert {"fastapi", "uvicorn", "mlflow", "tensorflow", "prometheus-fastapi-instrumentator", "psycopg2-binary", "boto3"} <= locked_packages("serving")
