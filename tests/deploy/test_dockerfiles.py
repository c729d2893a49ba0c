"""The Dockerfiles, checked without a Docker engine: hadolint, what they copy, and how they run."""

import re
import subprocess
import tomllib

import pytest

from tests.deploy.deploy_support import (
    DOCKERFILES,
    PUBLIC_IMAGES,
    REPO,
    copy_sources,
    dockerfile_instructions,
    dockerignored,
    image_repository,
    image_tag,
)
from tests.helpers import VENV_BIN

# Dockerfile -> (port it serves, what its HEALTHCHECK must ask).
SERVICE_CHECKS = {
    "deploy/docker/Dockerfile.code": (4000, "grpc-health-check"),
    "deploy/docker/Dockerfile.dagster": (3000, "/server_info"),
    "serving/Dockerfile": (8000, "/health"),
    "streamlit_app/Dockerfile": (8501, "/_stcore/health"),
    "deploy/docker/Dockerfile.mlflow": (5000, "/health"),
}
LOCKED = {package["name"] for package in tomllib.loads((REPO / "uv.lock").read_text())["package"]}


def stages(dockerfile: str) -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage; the last is the image that ships."""
    groups: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions(REPO / dockerfile):
        if instruction[0] == "FROM":
            groups.append([])
        if groups:
            groups[-1].append(instruction)
    return groups


def build_args(dockerfile: str) -> dict[str, str]:
    return dict(
        arguments.split("=", 1)
        for keyword, arguments in dockerfile_instructions(REPO / dockerfile)
        if keyword == "ARG" and "=" in arguments
    )


def test_hadolint_finds_nothing():
    linted = subprocess.run(
        [str(VENV_BIN / "hadolint"), "--no-color", *DOCKERFILES], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert linted.returncode == 0 and not linted.stdout.strip(), linted.stdout + linted.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_copies_only_paths_in_the_build_context(dockerfile):
    sources = [
        source
        for keyword, arguments in dockerfile_instructions(REPO / dockerfile)
        if keyword in ("COPY", "ADD")
        for source in copy_sources(arguments) or []
    ]
    assert sources, f"{dockerfile} copies nothing from the build context"
    missing = [source for source in sources if not (REPO / source).exists()]
    ignored = [source for source in sources if dockerignored(source)]
    assert not missing, f"{dockerfile} copies paths that do not exist: {missing}"
    assert not ignored, f"{dockerfile} copies paths that .dockerignore leaves out: {ignored}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_bases_are_pinned_public_images(dockerfile):
    args = build_args(dockerfile)
    aliases = set()
    for keyword, arguments in dockerfile_instructions(REPO / dockerfile):
        if keyword != "FROM":
            continue
        words = arguments.split()
        image = re.sub(r"\$\{(\w+)\}", lambda match: args[match.group(1)], words[0])
        if image not in aliases:
            assert image_repository(image) in PUBLIC_IMAGES, f"{dockerfile}: base {image} is not a known public image"
            assert image_tag(image) not in ("", "latest"), f"{dockerfile}: base {image} has no fixed tag"
        if len(words) == 3 and words[1].upper() == "AS":
            aliases.add(words[2])
    python = args["PYTHON_IMAGE"]
    assert image_repository(python) == "python" and image_tag(python).startswith("3.11-slim"), python


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_installs_from_the_lock_file(dockerfile):
    runs = " ".join(arguments for keyword, arguments in dockerfile_instructions(REPO / dockerfile) if keyword == "RUN")
    assert re.search(r"uv (sync|export) --(frozen|locked) --no-(dev|default-groups)", runs), f"{dockerfile} does not install from uv.lock"
    unlocked = runs.replace("uv pip install --constraint", "")
    assert "pip install" not in unlocked, f"{dockerfile} installs outside the lock"
    # What `uv pip install --constraint` names is in the lock, or pinned to one version here.
    installs = [re.findall(r"uv pip install --constraint \S+([^&]*)", arguments)
                for keyword, arguments in dockerfile_instructions(REPO / dockerfile) if keyword == "RUN"]
    for named in (packages for found in installs for packages in found):
        loose = [package for package in named.split() if package not in LOCKED and "==" not in package]
        assert not loose, f"{dockerfile} installs packages neither locked nor pinned: {loose}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_final_image_runs_as_a_numeric_non_root_user_with_a_health_check(dockerfile):
    final = stages(dockerfile)[-1]
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert users, f"{dockerfile}: the final stage has no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{dockerfile}: USER {users[-1]} is root or not numeric"

    port, probe = SERVICE_CHECKS[dockerfile]
    exposed = [arguments for keyword, arguments in final if keyword == "EXPOSE"]
    assert exposed == [str(port)], f"{dockerfile}: EXPOSE {exposed}, expected {port}"
    checks = [arguments for keyword, arguments in final if keyword == "HEALTHCHECK"]
    assert len(checks) == 1 and probe in checks[0] and str(port) in checks[0], f"{dockerfile}: HEALTHCHECK {checks}"
    assert [keyword for keyword, _ in final].count("CMD") == 1
