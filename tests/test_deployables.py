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


GROUP_OF_PACKAGE = {"skin_cancer_assets": "pipeline", "resources": "pipeline", "serving": "serving", "streamlit_app": "app"}
"""The dependency group that installs what each package of the project imports (the contract's are the project's own)."""


def declared(group: str | None) -> set[str]:
    """Distribution names pyproject.toml declares for `group` (None: the project's own dependencies)."""
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    requirements = pyproject["project"]["dependencies"] + (pyproject["dependency-groups"][group] if group else [])
    return {re.split(r"[=<>\[;! ]", requirement, maxsplit=1)[0].lower().replace("_", "-") for requirement in requirements}


@pytest.mark.parametrize("package", sorted(GROUP_OF_PACKAGE))
def test_every_third_party_package_imported_is_declared_in_its_group(package):
    """Nothing the code imports may arrive only because another package happens to pull it in."""
    import importlib.metadata
    import sys

    from tests.test_architecture import PROJECT, imported_packages

    distributions = importlib.metadata.packages_distributions()
    group = GROUP_OF_PACKAGE[package]
    undeclared = {}
    for module, files in imported_packages(package).items():
        if module in PROJECT or module in sys.stdlib_module_names:
            continue
        names = {name.lower().replace("_", "-") for name in distributions.get(module, [module])}
        if not names & declared(group):
            undeclared[module] = sorted(files)
    assert not undeclared, f"imported by {package} but not declared in the {group} group of pyproject.toml: {undeclared}"
