"""The Kubernetes layer, checked without a cluster: manifests against the Kubernetes schemas,
the Helm values against the chart's layout, names that must meet, who may reach MLflow, and the
per-step Job the k8s executor would build for ResNet50 from its op tags."""

import json
import re
import tomllib

import dagster as dg
import kubernetes_validate
import pytest

from tests.deploy.deploy_support import (
    BUILT_IMAGES,
    DEPLOY,
    K8S,
    PUBLIC_IMAGES,
    REPO,
    documented_variables,
    image_repository,
    image_tag,
    load_yaml,
    load_yaml_documents,
)

KUBERNETES_VERSION = "1.30.0"
MANIFESTS = sorted(path.name for path in K8S.glob("*.yaml") if path.name != "values.yaml")
SECRETS = {"skin-cancer-secrets", "dagster-postgresql-secret"}

# Keys of Dagster's Helm chart (values.schema.json of dagster/dagster) that these values use.
CHART_KEYS = {
    "global", "generatePostgresqlPasswordSecret", "dagster-user-deployments", "runLauncher", "postgresql",
    "computeLogManager", "dagsterWebserver", "dagsterDaemon", "concurrency", "telemetry",
}
USER_DEPLOYMENT_KEYS = {
    "name", "image", "dagsterApiGrpcArgs", "port", "includeConfigInLaunchedRuns", "env", "envConfigMaps",
    "envSecrets", "podSecurityContext", "securityContext", "resources",
}
K8S_RUN_LAUNCHER_KEYS = {"envConfigMaps", "envSecrets", "runK8sConfig"}


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    return [doc for name in MANIFESTS for doc in load_yaml_documents(K8S / name)]


@pytest.fixture(scope="module")
def values() -> dict:
    return load_yaml(K8S / "values.yaml")


def named(manifests, kind: str, name: str) -> dict:
    (found,) = [doc for doc in manifests if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def containers(manifests):
    for doc in manifests:
        if doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]["spec"]
            yield from ((doc["metadata"]["name"], c) for c in pod.get("initContainers", []) + pod["containers"])


def config_map(manifests) -> dict:
    return named(manifests, "ConfigMap", "skin-cancer-config")["data"]


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_matches_the_kubernetes_schema(name):
    for doc in load_yaml_documents(K8S / name):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_images_are_built_here_or_pinned_public(manifests):
    for deployment, container in containers(manifests):
        image = container["image"]
        if image_repository(image) not in BUILT_IMAGES:
            assert image_repository(image) in PUBLIC_IMAGES, f"{deployment}: {image} is not a known image"
            assert image_tag(image) not in ("", "latest"), f"{deployment}: {image} has no fixed tag"


def test_services_select_a_deployment_port(manifests):
    for service in (doc for doc in manifests if doc["kind"] == "Service"):
        selector = service["spec"]["selector"]
        targets = [
            doc for doc in manifests
            if doc["kind"] == "Deployment" and selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, f"Service {service['metadata']['name']} selects {len(targets)} Deployments"
        ports = {port["name"] for c in targets[0]["spec"]["template"]["spec"]["containers"] for port in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports


def test_env_comes_from_the_config_map_and_known_secrets(manifests):
    data = config_map(manifests)
    known = documented_variables()
    assert not set(data) - known, f"ConfigMap keys nothing reads: {sorted(set(data) - known)}"
    for deployment, container in containers(manifests):
        for variable in container.get("env", []):
            assert variable["name"] in known, f"{deployment}: {variable['name']} is read by nothing"
            source = variable.get("valueFrom", {})
            if "configMapKeyRef" in source and not source["configMapKeyRef"].get("optional"):
                assert source["configMapKeyRef"]["key"] in data, f"{deployment}: no {source['configMapKeyRef']}"
            if "secretKeyRef" in source:
                assert source["secretKeyRef"]["name"] in SECRETS
    guide = (DEPLOY / "README.md").read_text()
    for secret in SECRETS:
        assert secret in guide, f"deploy/README.md does not say how to create the Secret {secret}"


def test_serving_probes_and_contract(manifests):
    deployment = named(manifests, "Deployment", "skin-cancer-serving")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert image_repository(container["image"]) == "skin-cancer-serving"
    assert container["ports"] == [{"name": "http", "containerPort": 8000}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    env = {variable["name"]: variable for variable in container["env"]}
    assert {"MODEL_URI", "MLFLOW_TRACKING_URI", "SERVING_ADMIN_TOKEN"} <= set(env)
    assert env["SERVING_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "skin-cancer-secrets"
    assert config_map(manifests)["MODEL_URI"] == "models:/skin-cancer-classifier@champion"


def test_serving_is_set_to_roll_one_ready_pod_at_a_time_and_the_deploy_step_may_roll_it(manifests, values):
    """The configuration of a rollout without downtime (only a cluster can show the rollout itself):
    two replicas, a new pod ready before an old one stops; the run's service account may read and
    patch exactly this Deployment (the deploy step's rolling restart)."""
    from resources.deploy import KubernetesServingTarget

    name = KubernetesServingTarget.model_fields["deployment"].default
    deployment = named(manifests, "Deployment", name)
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert config_map(manifests)["SERVING_DEPLOY_TARGET"] == "kubernetes"

    role = named(manifests, "Role", "skin-cancer-serving-deployer")
    (rule,) = role["rules"]
    assert rule["apiGroups"] == ["apps"] and "deployments" in rule["resources"]
    assert rule["resourceNames"] == [name] and {"get", "patch"} <= set(rule["verbs"])
    binding = named(manifests, "RoleBinding", "skin-cancer-serving-deployer")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    run_account = values["dagster-user-deployments"]["serviceAccount"]["name"]
    assert {"kind": "ServiceAccount", "name": run_account} in binding["subjects"]


def test_urls_in_the_config_map_reach_services(manifests):
    data = config_map(manifests)
    for variable in ("MLFLOW_TRACKING_URI", "SERVING_URL"):
        host, port = re.match(r"http://([^:/]+):(\d+)", data[variable]).groups()
        service = named(manifests, "Service", host)
        assert int(port) in [p["port"] for p in service["spec"]["ports"]], f"{variable}: port {port}"
    # The deploy step's Kubernetes target rolls this Deployment by name.
    from resources.deploy import KubernetesServingTarget

    named(manifests, "Deployment", KubernetesServingTarget.model_fields["deployment"].default)


def test_helm_values_use_the_charts_keys(values):
    assert set(values) <= CHART_KEYS, f"not keys of the dagster chart: {sorted(set(values) - CHART_KEYS)}"
    for deployment in values["dagster-user-deployments"]["deployments"]:
        assert set(deployment) <= USER_DEPLOYMENT_KEYS
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert set(values["runLauncher"]["config"]["k8sRunLauncher"]) <= K8S_RUN_LAUNCHER_KEYS
    assert values["global"]["postgresqlSecretName"] in SECRETS
    assert values["postgresql"]["existingSecret"] == values["global"]["postgresqlSecretName"]


def user_deployments(values: dict) -> dict[str, dict]:
    return {deployment["name"]: deployment for deployment in values["dagster-user-deployments"]["deployments"]}


def test_helm_user_deployment_runs_the_code_image_with_the_k8s_executor(values, manifests):
    deployment = user_deployments(values)["skin-cancer"]
    dagster = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]
    assert deployment["image"]["repository"] == "skin-cancer-code"
    assert deployment["dagsterApiGrpcArgs"] == ["-m", dagster["module_name"]]
    assert deployment["port"] == 4000
    assert deployment["env"]["DAGSTER_EXECUTOR"] == "k8s"
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    config_maps = {doc["metadata"]["name"] for doc in manifests if doc["kind"] == "ConfigMap"}
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    for holder in (*user_deployments(values).values(), launcher, values["dagsterWebserver"], values["dagsterDaemon"]):
        assert {ref["name"] for ref in holder["envConfigMaps"]} <= config_maps
        assert {ref["name"] for ref in holder["envSecrets"]} <= SECRETS


def _step_job(asset: dg.AssetsDefinition) -> dict:
    """The Job that k8s_job_executor builds for an asset's step, from its op tags."""
    from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

    tags = {key: value if isinstance(value, str) else json.dumps(value) for key, value in asset.op.tags.items()}
    user_config = get_user_defined_k8s_config(tags)  # raises on a tag the executor would reject
    return construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image="skin-cancer-code:latest", dagster_home="/opt/dagster/dagster_home"),
        ["dagster", "api", "execute_step"],
        f"dagster-step-{asset.op.name}",
        user_defined_k8s_config=user_config,
    ).to_dict()


def _model_steps(gpu_tags: dict) -> dict[str, dict]:
    from skin_cancer_assets.definitions import build_defs
    from skin_cancer_assets.model_zoo import ZOO
    from skin_cancer_assets.profiles import profile_named

    defs = build_defs(profile_named("default"), gpu_tags)
    return {spec.name: _step_job(defs.get_assets_def(spec.name)) for spec in ZOO}


def test_the_deploy_location_runs_from_the_code_image_as_the_workspace_names_it(values):
    modules = {entry["python_module"]["module_name"] for entry in load_yaml(REPO / "workspace.yaml")["load_from"]}
    served = {deployment["dagsterApiGrpcArgs"][1] for deployment in user_deployments(values).values()}
    assert served == modules == {"skin_cancer_assets.definitions", "skin_cancer_assets.deploy_location"}
    images = {deployment["image"]["repository"] for deployment in user_deployments(values).values()}
    assert images == {"skin-cancer-code"}


def test_gpu_requests_are_opt_in_and_only_for_models_that_want_one():
    from skin_cancer_assets.environment import gpu_step_tags

    for job in _model_steps({}).values():  # the default: a cluster without GPU nodes runs every step
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert "nvidia.com/gpu" not in str(container.get("resources"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKIN_CANCER_K8S_GPU", "1")
        jobs = _model_steps(gpu_step_tags())
    wanted = {name for name, job in jobs.items() if "nvidia.com/gpu" in str(job["spec"]["template"]["spec"]["containers"])}
    assert wanted == {"resnet50"}
    (container,) = jobs["resnet50"]["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_serving_logs_where_the_monitoring_assets_read(manifests, values):
    """Serving's bucket, region, endpoint and keys come from the ConfigMap and Secret that every run gets."""
    (container,) = named(manifests, "Deployment", "skin-cancer-serving")["spec"]["template"]["spec"]["containers"]
    env = {variable["name"]: variable["valueFrom"] for variable in container["env"] if "valueFrom" in variable}
    for variable in ("AWS_BUCKET", "AWS_REGION", "AWS_ENDPOINT_URL"):
        assert env[variable]["configMapKeyRef"] | {"optional": True} == {"name": "skin-cancer-config", "key": variable, "optional": True}
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[variable]["secretKeyRef"] == {"name": "skin-cancer-secrets", "key": variable}
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert {"name": "skin-cancer-config"} in launcher["envConfigMaps"] and {"name": "skin-cancer-secrets"} in launcher["envSecrets"]


def _selects(selector: dict, labels: dict) -> bool:
    """A label selector's verdict on a pod's labels (matchLabels and `In` expressions, all this repository uses)."""
    expressions = selector.get("matchExpressions", [])
    assert all(expression["operator"] == "In" for expression in expressions)
    return selector.get("matchLabels", {}).items() <= labels.items() and all(
        labels.get(expression["key"]) in expression["values"] for expression in expressions
    )


def _dagster_pod_labels(component: str) -> dict:
    """The labels dagster-k8s gives a run (run_worker) or step (step_worker) pod."""
    from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job

    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image="skin-cancer-code:latest", dagster_home="/opt/dagster/dagster_home"),
        ["dagster", "api", "execute_run"], "dagster-run-1", component=component,
    ).to_dict()
    return job["spec"]["template"]["metadata"]["labels"]


def test_only_the_pipeline_and_serving_reach_mlflow(manifests, values):
    policy = named(manifests, "NetworkPolicy", "mlflow")
    mlflow = named(manifests, "Deployment", "mlflow")["spec"]["template"]["metadata"]["labels"]
    assert _selects(policy["spec"]["podSelector"], mlflow) and policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http"}]

    def admitted(labels: dict) -> bool:
        return any(_selects(peer["podSelector"], labels) for peer in rule["from"])

    pipeline = [*({"deployment": name} for name in user_deployments(values)), _dagster_pod_labels("run_worker"), _dagster_pod_labels("step_worker")]
    assert all(admitted(labels) for labels in pipeline)
    pods = {doc["metadata"]["name"]: doc["spec"]["template"]["metadata"]["labels"] for doc in manifests if doc["kind"] == "Deployment"}
    assert {name for name, labels in pods.items() if admitted(labels)} == {"skin-cancer-serving"}
