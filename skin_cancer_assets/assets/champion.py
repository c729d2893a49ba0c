"""The selection group: elect the champion among the trained candidates."""

import dagster as dg
import mlflow
import numpy as np
from mlflow.exceptions import MlflowException

from resources.mlflow_tracking import MlflowTracking
from skin_cancer_assets import checks, training
from skin_cancer_assets.model_zoo import ZOO
from skin_cancer_assets.profiles import Profile
from skin_cancer_contract.evaluation import METRICS, evaluate, split_digest
from skin_cancer_contract.imaging import resize_images
from skin_cancer_contract.registry import CHAMPION_ALIAS, REGISTERED_MODEL_NAME, version_uri


class ChampionConfig(dg.Config):
    primary_metric: str = "roc_auc"
    """Test-set metric that decides: ROC-AUC ranks models independently of any threshold."""
    min_improvement: float = 0.0
    """A challenger must beat the champion by more than this to take the alias."""


def _candidate(client: mlflow.MlflowClient, version: str) -> dict:
    model_version = client.get_model_version(REGISTERED_MODEL_NAME, version)
    metrics = client.get_run(model_version.run_id).data.metrics
    return {
        "version": str(version),
        "model_class": model_version.tags.get("model_class", "unknown"),
        "run_id": model_version.run_id,
        "threshold": float(model_version.tags.get("threshold", 0.5)),
        "test_set_digest": model_version.tags.get("test_set_digest"),
        "metrics": {name: metrics.get(f"test_{name}") for name in METRICS},
    }


def _rescore(candidate: dict, images: np.ndarray, labels: np.ndarray) -> dict:
    """Score a champion trained on another test set on today's test set."""
    import mlflow.keras

    model = mlflow.keras.load_model(version_uri(candidate["version"]))
    images = resize_images(images, model.input_shape[1])
    metrics = evaluate(labels, training.predict(model, images), candidate["threshold"])
    return {**candidate, "metrics": {name: metrics[name] for name in METRICS}, "rescored": True}


@dg.asset(
    group_name="selection",
    deps=[spec.name for spec in ZOO],
    kinds={"mlflow"},
    check_specs=[checks.CHAMPION_QUALITY],
)
def champion_model(
    context: dg.AssetExecutionContext,
    config: ChampionConfig,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    mlflow: MlflowTracking,
    profile: Profile,
):
    """The best candidate on the held-out test set; the MLflow alias `champion` moves only when a
    challenger beats the current champion by the primary metric (ROC-AUC by default)."""
    client = mlflow.MlflowClient()
    digest = split_digest(test_images, test_labels)
    candidates = []
    for spec in ZOO:
        event = context.instance.get_latest_materialization_event(dg.AssetKey(spec.name))
        if event is None or event.asset_materialization is None:
            context.log.warning(f"{spec.name} has never been materialized; it is not a candidate")
            continue
        version = event.asset_materialization.metadata["mlflow_model_version"].value
        candidates.append(_candidate(client, str(version)))
    if not candidates:
        raise dg.Failure("no trained candidates: materialize at least one model asset first")

    key = config.primary_metric

    def score(candidate: dict) -> tuple[float, float]:
        return (candidate["metrics"][key] or 0.0, candidate["metrics"]["recall_malignant"] or 0.0)

    challenger = max(candidates, key=score)
    try:
        incumbent = _candidate(client, client.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS).version)
    except MlflowException:
        incumbent = None
    if incumbent is not None and incumbent["test_set_digest"] != digest:
        incumbent = _rescore(incumbent, test_images, test_labels)

    if incumbent is None:
        decision, reason = "promoted", f"no champion yet; {challenger['model_class']} has the best test {key}"
    elif incumbent["version"] == challenger["version"]:
        decision, reason = "kept", f"version {incumbent['version']} is already the champion"
    elif score(challenger)[0] > score(incumbent)[0] + config.min_improvement:
        decision = "promoted"
        reason = (
            f"{challenger['model_class']} v{challenger['version']} test {key} {score(challenger)[0]:.4f} beats "
            f"champion v{incumbent['version']} {score(incumbent)[0]:.4f}"
        )
    else:
        decision = "kept"
        reason = (
            f"best challenger {challenger['model_class']} v{challenger['version']} test {key} "
            f"{score(challenger)[0]:.4f} does not beat champion v{incumbent['version']} {score(incumbent)[0]:.4f}"
        )
    champion = challenger if decision == "promoted" else incumbent
    if decision == "promoted":
        client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, champion["version"])
    context.log.info(f"champion: {decision} ({reason})")

    record = {
        "name": REGISTERED_MODEL_NAME,
        "alias": CHAMPION_ALIAS,
        "model_uri": version_uri(champion["version"]),
        **{k: champion[k] for k in ("version", "model_class", "run_id", "threshold", "metrics")},
        "decision": decision,
        "reason": reason,
        "primary_metric": key,
        "candidates": [{k: c[k] for k in ("version", "model_class", "metrics")} for c in candidates],
    }
    table = "\n".join(
        f"| {c['model_class']} | {c['version']} | "
        + " | ".join(f"{c['metrics'][m]:.3f}" if c["metrics"][m] is not None else "-" for m in METRICS)
        + " |"
        for c in candidates
    )
    yield dg.Output(
        record,
        metadata={
            "champion_version": int(champion["version"]),
            "champion_class": champion["model_class"],
            "decision": decision,
            "reason": reason,
            **{f"test_{m}": float(champion["metrics"][m] or 0.0) for m in METRICS},
            "candidates": dg.MetadataValue.md(
                "| model | version | " + " | ".join(METRICS) + " |\n|" + "---|" * (2 + len(METRICS)) + "\n" + table
            ),
            "registry": dg.MetadataValue.url(f"{mlflow.ui_url}/#/models/{REGISTERED_MODEL_NAME}"),
        },
    )
    yield checks.champion_quality(record, profile.min_champion_roc_auc)
