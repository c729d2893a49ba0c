"""The Compose stack, checked without a Docker engine: it matches the Compose spec, names only
images, services, files and variables that exist, and its networks let each service reach only
what it uses (`make compose-test` checks the same on a real engine)."""

import configparser
import json
import re
import tomllib
from importlib import resources

import jsonschema
import pytest

from tests.deploy.deploy_support import (
    BUILT_IMAGES,
    COMPOSE_FILE,
    DEPLOY,
    PUBLIC_IMAGES,
    REPO,
    dockerfile_instructions,
    documented_variables,
    env_example,
    image_repository,
    image_tag,
    load_yaml,
)

VARIABLE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")
LONG_RUNNING = {"postgres", "minio", "mlflow", "code-location", "deploy-location", "webserver", "daemon", "serving", "streamlit"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


def interpolate(value: str) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} with the values of .env.example."""
    example = env_example()

    def value_of(match: re.Match) -> str:
        name, operator, default = match.groups()
        return example.get(name) or (default if operator == "-" else "")

    return VARIABLE.sub(value_of, value)


def pair(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def healthchecked_by_image(service: dict) -> bool:
    dockerfile = service.get("build", {}).get("dockerfile")
    return bool(dockerfile) and "HEALTHCHECK" in (REPO / dockerfile).read_text()


def test_matches_the_compose_specification():
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    document = load_yaml(COMPOSE_FILE)
    errors = sorted(jsonschema.validators.validator_for(schema)(schema).iter_errors(document), key=str)
    assert not errors, "\n".join(f"{list(error.path)}: {error.message}" for error in errors)


def test_runs_every_part_of_the_platform(compose):
    assert LONG_RUNNING | {"minio-init", "mlflow-users", "docker-proxy", "dagster-migrate"} == set(compose["services"])


def test_every_variable_it_reads_is_in_env_example():
    used = {match.group(1) for match in VARIABLE.finditer(COMPOSE_FILE.read_text())}
    missing = used - set(env_example())
    assert not missing, f"used in docker-compose.yaml but not documented in .env.example: {sorted(missing)}"


def test_sets_only_known_variables(compose):
    known = documented_variables()
    unknown = {
        f"{name}: {variable}"
        for name, service in compose["services"].items()
        for variable in service.get("environment", {})
        if variable not in known
    }
    assert not unknown, f"variables nothing in the repository reads or documents: {sorted(unknown)}"


def test_known_variables_are_environment_reads_not_any_capitalised_string():
    known = documented_variables()
    assert {"SERVING_MAX_BATCH", "AWS_PREFIX", "MLFLOW_UI_URL"} <= known  # read through the code's own helpers
    assert not {"JPEG", "PNG", "RGB"} & known  # string literals in the code, not variables


def test_images_are_built_here_or_pinned_public(compose):
    for name, service in compose["services"].items():
        image = interpolate(service["image"])
        repository = image_repository(image)
        if "build" in service:
            build = service["build"]
            context = (COMPOSE_FILE.parent / build["context"]).resolve()
            assert context == REPO, f"{name}: build context {context} is not the repo root"
            assert BUILT_IMAGES.get(repository) == build["dockerfile"], f"{name}: {build['dockerfile']} builds {image}"
        else:
            assert repository in PUBLIC_IMAGES, f"{name}: {image} is neither built here nor a known public image"
            assert image_tag(image) not in ("", "latest"), f"{name}: {image} has no fixed tag"


def test_dependencies_exist_and_have_health_checks(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on a missing service {dependency}"
            if rule["condition"] == "service_healthy":
                target = services[dependency]
                assert "healthcheck" in target or healthchecked_by_image(target), f"{dependency} has no health check"
    for name in LONG_RUNNING:
        assert "healthcheck" in services[name] or healthchecked_by_image(services[name]), f"{name} has no health check"


def test_mounted_files_exist_and_ports_stay_on_loopback(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name} mounts a missing {source}"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_code_location_serves_the_definitions_and_runs_steps_in_containers(compose):
    code = compose["services"]["code-location"]
    environment = code["environment"]
    assert environment["DAGSTER_EXECUTOR"] == "docker"
    assert interpolate(environment["DAGSTER_CURRENT_IMAGE"]) == interpolate(code["image"])

    servers = {entry["grpc_server"]["location_name"]: entry["grpc_server"] for entry in load_yaml(DEPLOY / "docker" / "workspace.yaml")["load_from"]}
    dagster = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]
    server = servers[dagster["code_location_name"]]
    assert server["host"] == "code-location"
    (command,) = [json.loads(arguments) for keyword, arguments in
                  dockerfile_instructions(REPO / BUILT_IMAGES["skin-cancer-code"]) if keyword == "CMD"]
    assert command[:3] == ["dagster", "api", "grpc"]
    assert pair(command, "-m") == dagster["module_name"] and pair(command, "-p") == str(server["port"])


def test_the_deploy_location_is_served_from_the_code_image_as_the_workspace_names_it(compose):
    """The same locations as the repository's workspace.yaml, by name and module."""
    root = {entry["python_module"]["location_name"]: entry["python_module"]["module_name"] for entry in load_yaml(REPO / "workspace.yaml")["load_from"]}
    servers = {entry["grpc_server"]["location_name"]: entry["grpc_server"] for entry in load_yaml(DEPLOY / "docker" / "workspace.yaml")["load_from"]}
    assert set(servers) == set(root) == {"skin_cancer", "skin_cancer_deploy"}
    deploy = compose["services"][servers["skin_cancer_deploy"]["host"]]
    assert interpolate(deploy["image"]) == interpolate(compose["services"]["code-location"]["image"])
    assert pair(deploy["command"], "-m") == root["skin_cancer_deploy"] and pair(deploy["command"], "-p") == str(servers["skin_cancer_deploy"]["port"])
    assert deploy["environment"]["SERVING_DEPLOY_TARGET"] == "docker"


def test_services_find_each_other_by_name(compose):
    services = compose["services"]
    environment = services["code-location"]["environment"]
    for variable in ("MLFLOW_TRACKING_URI", "SERVING_URL", "AWS_ENDPOINT_URL"):
        host = re.match(r"https?://([^:/]+)", environment[variable]).group(1)
        assert host in services, f"{variable} points at {host}, which is not a service"
    assert services["streamlit"]["environment"]["SERVING_URL"] == environment["SERVING_URL"]
    assert services["serving"]["environment"]["MLFLOW_TRACKING_URI"] == environment["MLFLOW_TRACKING_URI"]
    assert services["serving"]["environment"]["MODEL_URI"] == "models:/skin-cancer-classifier@champion"
    assert "@postgres:5432/mlflow" in services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]


def peers(compose: dict, name: str) -> set[str]:
    """The other services `name` shares a network with: all it can reach."""
    services = compose["services"]
    networks = set(services[name]["networks"])
    return {other for other, service in services.items() if other != name and networks & set(service["networks"])}


def test_only_the_launchers_reach_the_docker_api(compose):
    """Creating a container is root on the host: the proxy's network holds only the daemon (it starts
    the run containers, which start the step containers) and the deploy location (its sensor and the
    Docker deploy target find serving's containers), and leads nowhere else."""
    (network,) = compose["services"]["docker-proxy"]["networks"]
    assert peers(compose, "docker-proxy") == {"daemon", "deploy-location"}
    assert compose["networks"][network]["internal"] is True


def test_serving_and_the_app_reach_only_what_they_use(compose):
    """Serving parses untrusted uploads: it reaches MLflow (to load the champion), MinIO (its
    prediction log) and who deploys it, never the Docker API, Postgres or the webserver's API.
    The app reaches serving alone."""
    assert peers(compose, "serving") == {"mlflow", "minio", "deploy-location", "daemon", "streamlit"}
    assert peers(compose, "streamlit") == {"serving"}


def test_mlflow_requires_sign_in_and_serving_signs_in_read_only(compose):
    services = compose["services"]
    mlflow = services["mlflow"]
    assert pair(mlflow["command"], "--app-name") == "basic-auth"
    dockerfile = REPO / mlflow["build"]["dockerfile"]
    config_path = dict(re.findall(r"(\w+)=(\S+)", dockerfile.read_text()))["MLFLOW_AUTH_CONFIG_PATH"]
    config = configparser.ConfigParser()
    config.read(DEPLOY / "docker" / "mlflow" / config_path.rsplit("/", 1)[1])
    assert config["mlflow"]["default_permission"] == "READ"  # a user other than the admin changes nothing it did not create
    assert "admin_password" not in config["mlflow"]  # from the environment
    for variable in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert VARIABLE.fullmatch(mlflow["environment"][variable]).group(2) == "?", f"{variable} is not a required secret"

    admin = mlflow["environment"]["MLFLOW_AUTH_ADMIN_USERNAME"]
    reader = services["mlflow-users"]["environment"]
    pipeline = services["code-location"]["environment"]
    serving = services["serving"]["environment"]
    assert (pipeline["MLFLOW_TRACKING_USERNAME"], pipeline["MLFLOW_TRACKING_PASSWORD"]) == (admin, mlflow["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"])
    assert (serving["MLFLOW_TRACKING_USERNAME"], serving["MLFLOW_TRACKING_PASSWORD"]) == (reader["MLFLOW_READER_USERNAME"], reader["MLFLOW_READER_PASSWORD"])
    assert interpolate(serving["MLFLOW_TRACKING_USERNAME"]) != interpolate(admin)
    assert services["serving"]["depends_on"]["mlflow-users"]["condition"] == "service_completed_successfully"


def test_serving_logs_where_the_monitoring_assets_read(compose):
    """The prediction log goes to the pipeline's bucket, under the same prefix, with keys that work there."""
    serving = compose["services"]["serving"]["environment"]
    pipeline = compose["services"]["code-location"]["environment"]
    for variable in ("AWS_BUCKET", "AWS_PREFIX", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert serving.get(variable) == pipeline.get(variable), variable
    assert serving["AWS_BUCKET"]
