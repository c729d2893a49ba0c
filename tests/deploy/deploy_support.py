"""What the deployment checks share: the repository's files, the images it builds, the
variables it documents, and a throwaway PostgreSQL started with deploy/local-postgres."""

import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker" / "docker-compose.yaml"
ENV_EXAMPLE = DEPLOY / "docker" / ".env.example"
K8S = DEPLOY / "k8s"
ARCHITECTURE = REPO / "ARCHITECTURE.md"

# Image name (repository part) -> the Dockerfile that builds it, context = repository root.
BUILT_IMAGES = {
    "skin-cancer-code": "deploy/docker/Dockerfile.code",
    "skin-cancer-dagster": "deploy/docker/Dockerfile.dagster",
    "skin-cancer-serving": "serving/Dockerfile",
    "skin-cancer-streamlit": "streamlit_app/Dockerfile",
    "skin-cancer-mlflow": "deploy/docker/Dockerfile.mlflow",
}
DOCKERFILES = sorted(BUILT_IMAGES.values())

# Public images the deployment may pull, by repository; each use must carry a fixed tag.
PUBLIC_IMAGES = {
    "python",
    "ghcr.io/astral-sh/uv",
    "postgres",
    "quay.io/minio/minio",
    "quay.io/minio/mc",
    "tecnativa/docker-socket-proxy",
}

INSTANCE_FILES = {
    "local default": REPO / "dagster.yaml",
    "docker compose": DEPLOY / "docker" / "dagster.yaml",
    "local postgres": DEPLOY / "local-postgres" / "dagster.yaml",
}

# Variables read by third-party programs rather than by the project's code, with who reads them.
THIRD_PARTY_VARIABLES = {
    "DAGSTER_HOME": "dagster",
    "DAGSTER_CURRENT_IMAGE": "dagster api grpc: the image runs and steps start from",
    "DOCKER_HOST": "docker SDK used by dagster-docker",
    "MLFLOW_BACKEND_STORE_URI": "mlflow server",
    "MLFLOW_ARTIFACTS_DESTINATION": "mlflow server",
    "MLFLOW_S3_ENDPOINT_URL": "mlflow's S3 artifact store",
    "MLFLOW_SERVER_ALLOWED_HOSTS": "mlflow server's host check",
    "MLFLOW_AUTH_ADMIN_USERNAME": "mlflow server --app-name basic-auth: its admin, made on the first start",
    "MLFLOW_AUTH_ADMIN_PASSWORD": "mlflow server --app-name basic-auth: its admin, made on the first start",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "mlflow server --app-name basic-auth: the key of its CSRF tokens",
    "MLFLOW_TRACKING_USERNAME": "mlflow's client: basic auth",
    "MLFLOW_TRACKING_PASSWORD": "mlflow's client: basic auth",
    "POSTGRES_USER": "postgres image",
    "POSTGRES_PASSWORD": "postgres image",
    "POSTGRES_DB": "postgres image",
    "MINIO_ROOT_USER": "minio image",
    "MINIO_ROOT_PASSWORD": "minio image",
    "CONTAINERS": "docker-socket-proxy",
    "NETWORKS": "docker-socket-proxy",
    "IMAGES": "docker-socket-proxy",
    "POST": "docker-socket-proxy",
    "MLFLOW_PG_HOST": "deploy/k8s/mlflow.yaml: the backend store URI of the MLflow server",
    "MLFLOW_PG_USER": "deploy/k8s/mlflow.yaml: the backend store URI of the MLflow server",
    "PGHOST": "psql",
    "PGUSER": "psql",
    "PGPASSWORD": "psql",
    "PGDATABASE": "psql",
}


PACKAGES = ("skin_cancer_contract", "skin_cancer_assets", "resources", "serving", "streamlit_app")
ENVIRONMENT_READ = re.compile(
    r"(?:environ\.get\(|environ\[|getenv\(|EnvVar\(|env_or\(|_config_env\(|_number\()\s*[\"']([A-Z][A-Z0-9_]+)[\"']"
)
"""A variable the project's code reads from the environment, directly or through its helpers."""


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def load_yaml_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def env_example() -> dict[str, str]:
    """The variables .env.example documents, with their example values."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def variables_read_by_code() -> set[str]:
    """Every environment variable the project's packages read."""
    return {name for package in PACKAGES for path in (REPO / package).rglob("*.py") for name in ENVIRONMENT_READ.findall(path.read_text())}


def documented_variables() -> set[str]:
    """Variables a deployment may set: documented, read by the project's code, or by a tool."""
    names = set(env_example()) | set(THIRD_PARTY_VARIABLES)
    names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", ARCHITECTURE.read_text()))
    names |= variables_read_by_code()
    for script in DEPLOY.rglob("*.sh"):
        names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", script.read_text()))
    for script in DEPLOY.rglob("*.py"):
        names |= set(ENVIRONMENT_READ.findall(script.read_text()))
    names |= {name for name in _dagster_variables() if name.startswith("DAGSTER_")}
    return names


def _dagster_variables() -> set[str]:
    """DAGSTER_* variables the deployment's own instance files read."""
    found = set()
    for path in (DEPLOY / "docker" / "dagster.yaml", DEPLOY / "local-postgres" / "dagster.yaml"):
        found |= set(re.findall(r"env: ([A-Z][A-Z0-9_]+)", path.read_text()))
    return found


def image_repository(image: str) -> str:
    """`quay.io/minio/mc:TAG` -> `quay.io/minio/mc`; a registry port is not a tag."""
    name = image.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    return head if head and "/" not in tail else name


def image_tag(image: str) -> str:
    name = image.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    return tail if head and "/" not in tail else ""


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def copy_sources(arguments: str) -> list[str] | None:
    """The build-context sources of a COPY/ADD, or None when it copies from another stage."""
    words = shlex.split(arguments)
    flags = [word for word in words if word.startswith("--")]
    if any(flag.startswith("--from=") for flag in flags):
        return None
    paths = [word for word in words if not word.startswith("--")]
    return paths[:-1]


def _ignore_pattern(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as a regex: `**` spans folders, `*` and `?` stay inside one."""
    regex = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/")):
        regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
    return re.compile(regex + r"\Z")


def dockerignored(relative_path: str) -> bool:
    """Whether .dockerignore keeps `relative_path` (or a folder above it) out of the context."""
    parts = Path(relative_path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for line in (REPO / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        regex = _ignore_pattern(pattern.lstrip("!"))
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


@contextmanager
def throwaway_postgres(port: int) -> Iterator[dict[str, str]]:
    """A cluster from deploy/local-postgres/start.sh in a temporary folder; yields its env."""
    state = Path(tempfile.mkdtemp(prefix="skin-cancer-pg-"))
    state.chmod(0o755)  # as root the server runs as `postgres`, which must reach the folder
    try:
        started = subprocess.run(
            [str(DEPLOY / "local-postgres" / "start.sh"), str(state / "pg"), str(port)],
            capture_output=True, text=True, timeout=120,
        )
        if started.returncode != 0:
            raise RuntimeError(f"deploy/local-postgres/start.sh failed:\n{started.stderr}")
        env = dict(re.findall(r"^export (\w+)=(.*)$", started.stdout, flags=re.MULTILINE))
        yield env
    finally:
        stop = DEPLOY / "local-postgres" / "stop.sh"
        subprocess.run([str(stop), str(state / "pg")], capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)
