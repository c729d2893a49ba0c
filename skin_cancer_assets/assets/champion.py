"""The selection group: elect the champion from the candidates' records and move the alias.

The rules are `skin_cancer_assets.election.elect`; this asset gathers what they compare. Every
score must be on the same validation images: a champion trained on another data version is
re-scored on today's validation images it never trained on (and the candidates with it, when
that leaves some out). Only a registry without the alias means "no champion yet"; any other
registry error fails the run before the alias moves. One election runs at a time: the step is in
the `skin_cancer_election` pool, which every instance file limits to 1.
"""

from contextlib import contextmanager
from dataclasses import replace

import dagster as dg
import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from pydantic import Field

from resources.mlflow_tracking import MlflowTracking
from skin_cancer_assets import checks, training
from skin_cancer_assets.assets.models import TRAINING_IMAGES, candidate_key
from skin_cancer_assets.election import Candidate, Decision, IncomparableScores, Rules, elect
from skin_cancer_assets.model_zoo import ZOO
from skin_cancer_assets.profiles import Profile
from skin_cancer_assets.training_config import TrainingConfig, with_defaults
from skin_cancer_contract.evaluation import METRICS, evaluate, split_digest
from skin_cancer_contract.imaging import resize_images
from skin_cancer_contract.registry import CHAMPION_ALIAS, REGISTERED_MODEL_NAME, version_uri

ELECTION_POOL = "skin_cancer_election"
"""Concurrency pool of the election step; the instance files limit every pool to one slot."""


class ChampionConfig(dg.Config):
    min_roc_auc: float = Field(
        default=0.0,
        description="Validation ROC-AUC the champion must reach (the blocking `quality_bar` check, "
        "evaluated before the alias moves); below it the run fails and the alias stays.",
    )
    min_improvement: float = Field(
        default=0.0, description="A challenger must beat the champion's validation ROC-AUC by more than this."
    )


def champion_config_for(profile: Profile) -> type[ChampionConfig]:
    """The launchpad's election settings, with the profile's quality bar as the default."""
    return with_defaults(ChampionConfig, "ChampionConfig", {"min_roc_auc": profile.min_champion_roc_auc})


def shared_validation_rows(profile: Profile, labels: np.ndarray) -> np.ndarray:
    """Rows of the train arrays that every model of `profile` holds out for validation."""
    shared = TrainingConfig(**profile.training_overrides)
    return training.validation_split(labels, shared)[1]


def champion_asset(profile: Profile) -> dg.AssetsDefinition:
    """`champion_model` for `profile`: its quality bar and its shared validation split."""
    config_class = champion_config_for(profile)

    @dg.asset(
        name="champion_model",
        group_name="selection",
        ins={candidate_key(spec.name): dg.AssetIn() for spec in ZOO},
        kinds={"mlflow"},
        check_specs=[checks.CHAMPION_QUALITY],
        pool=ELECTION_POOL,
    )
    def champion_model(
        context: dg.AssetExecutionContext,
        config: config_class,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        train_image_ids: list[str],
        mlflow: MlflowTracking,
        **candidate_records: dict,
    ):
        """The best candidate on the shared validation split; the MLflow alias `champion` moves only
        when it beats the current champion and reaches the quality bar. Test metrics are reported."""
        client = mlflow.MlflowClient()
        rows = shared_validation_rows(profile, train_labels)
        images, labels, image_ids = train_images[rows], train_labels[rows], [train_image_ids[row] for row in rows]
        today = split_digest(images, labels)
        candidates = _current_candidates([candidate_records[candidate_key(spec.name)] for spec in ZOO], today, context.log)
        incumbent = _read_incumbent(client)
        if incumbent is not None and incumbent.validation_digest != today:
            incumbent, candidates = _comparable(client, incumbent, candidates, images, labels, image_ids, context.log)
        try:
            decision = elect(candidates, incumbent, Rules(config.min_roc_auc, config.min_improvement))
        except IncomparableScores as error:
            raise dg.Failure(f"the election cannot rank the candidates: {error}; the alias was not touched") from error
        context.log.info(f"champion: {decision.outcome} ({decision.reason})")

        check = checks.champion_quality(decision, config.min_roc_auc)
        if not decision.meets_bar:  # recorded as a failed check; nothing materializes, so nothing deploys
            yield check
            raise dg.Failure(
                description=f"quality bar {config.min_roc_auc:.4f} not met: {decision.reason}. The alias "
                f"`{CHAMPION_ALIAS}` was not touched, nothing is deployed and the previous champion keeps serving.",
                metadata={"decision": decision.outcome, "min_roc_auc": config.min_roc_auc},
            )
        if decision.moves_alias:
            with _registry_errors(f"move the alias `{CHAMPION_ALIAS}` to version {decision.champion.version}"):
                client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, decision.champion.version)
        yield _champion_output(decision, incumbent, candidates, config.min_roc_auc, mlflow.ui_url)
        yield check

    return champion_model


def _current_candidates(records: list[dict], today: str, log) -> list[Candidate]:
    """The candidates measured on today's validation images. A model last trained on another data
    version (its step not run since the data changed) is left out, saying so."""
    candidates = [Candidate.from_record(record) for record in records]
    current = [c for c in candidates if c.validation_digest == today]
    for stale in (c for c in candidates if c.validation_digest != today):
        log.warning(f"{stale.label} was measured on other validation images (another data version): not a candidate "
                    f"until {stale.model_class} is trained again")
    if not current:
        raise dg.Failure(
            "no candidate was measured on today's validation images: materialize the model assets again "
            f"(the data changed since they were trained); the alias `{CHAMPION_ALIAS}` was not touched"
        )
    return current


@contextmanager
def _registry_errors(action: str):
    """Turn an MLflow error into a Failure naming the tracking server: the alias stays where it was."""
    try:
        yield
    except MlflowException as error:
        raise dg.Failure(
            f"MLflow tracking server {mlflow.get_tracking_uri()} (MLFLOW_TRACKING_URI) failed to {action}: "
            f"{error}. The alias `{CHAMPION_ALIAS}` was not touched and nothing is deployed."
        ) from error


def _read_incumbent(client: mlflow.MlflowClient) -> Candidate | None:
    """The version the alias points at, as a candidate record; None only when there is no alias."""
    with _registry_errors(f"read the alias `{CHAMPION_ALIAS}` of {REGISTERED_MODEL_NAME}"):
        try:
            aliases = client.get_registered_model(REGISTERED_MODEL_NAME).aliases
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return None  # nothing was ever registered
        if CHAMPION_ALIAS not in aliases:
            return None
        version = client.get_model_version(REGISTERED_MODEL_NAME, aliases[CHAMPION_ALIAS])
        metrics = client.get_run(version.run_id).data.metrics
        return Candidate(
            model_class=version.tags.get("model_class", "unknown"),
            version=str(version.version),
            run_id=version.run_id,
            threshold=float(version.tags.get("threshold", 0.5)),
            validation_digest=version.tags.get("validation_digest", ""),
            validation_metrics={name: metrics.get(f"val_{name}") for name in METRICS},
            test_digest=version.tags.get("test_digest", ""),
            test_metrics={name: metrics.get(f"test_{name}") for name in METRICS},
        )


def _comparable(
    client: mlflow.MlflowClient, incumbent: Candidate, candidates: list[Candidate],
    images: np.ndarray, labels: np.ndarray, image_ids: list[str], log,
) -> tuple[Candidate, list[Candidate]]:
    """Score a champion measured on other validation images on today's images it never trained
    on; when its training set leaves some out, score the candidates on the same images."""
    with _registry_errors(f"read the training images of champion {incumbent.label}"):
        logged = {artifact.path for artifact in client.list_artifacts(incumbent.run_id)}
        seen = None
        if TRAINING_IMAGES in logged:
            seen = set(mlflow.artifacts.load_dict(f"runs:/{incumbent.run_id}/{TRAINING_IMAGES}")["sha256"])
    if seen is None:
        log.warning(f"champion {incumbent.label} logged no {TRAINING_IMAGES}: it is scored on every validation image")
        seen = set()
    unseen = np.array([image_id not in seen for image_id in image_ids], dtype=bool)
    if not unseen.any():
        raise dg.Failure(
            f"champion {incumbent.label} trained on every one of today's {len(image_ids)} validation images, "
            f"so it cannot be compared; the alias `{CHAMPION_ALIAS}` was not touched"
        )
    images, labels = images[unseen], labels[unseen]
    digest = split_digest(images, labels)
    log.info(f"champion {incumbent.label} re-scored on {len(labels)} of today's {len(unseen)} validation images it never trained on")
    if not unseen.all():
        candidates = [_rescored(c, images, labels, digest) for c in candidates]
    return _rescored(incumbent, images, labels, digest), candidates


def _rescored(candidate: Candidate, images: np.ndarray, labels: np.ndarray, digest: str) -> Candidate:
    """`candidate` with validation metrics measured on (images, labels), resized to its input."""
    import mlflow.keras

    with _registry_errors(f"load {candidate.label}"):
        model = mlflow.keras.load_model(version_uri(candidate.version))
    probs = training.predict(model, resize_images(images, model.input_shape[1]))
    metrics = evaluate(labels, probs, candidate.threshold)
    return replace(candidate, validation_digest=digest, validation_metrics={name: metrics[name] for name in METRICS})


def _champion_output(
    decision: Decision, incumbent: Candidate | None, candidates: list[Candidate], bar: float, ui_url: str
) -> dg.Output:
    champion = decision.champion
    record = {
        "name": REGISTERED_MODEL_NAME,
        "alias": CHAMPION_ALIAS,
        "model_uri": version_uri(champion.version),
        **champion.to_record(),
        "decision": decision.outcome,
        "reason": decision.reason,
        "incumbent": incumbent.to_record() if incumbent else None,
        "min_roc_auc": bar,
        "candidates": [c.to_record() for c in candidates],
    }
    header = "| model | version | validation roc_auc | " + " | ".join(f"test {m}" for m in METRICS) + " |"
    rows = [
        f"| {c.model_class} | {c.version} | {c.roc_auc:.3f} | " + " | ".join(_shown(c.test_metrics.get(m)) for m in METRICS) + " |"
        for c in candidates
    ]
    return dg.Output(
        record,
        metadata={
            "champion_version": int(champion.version),
            "champion_class": champion.model_class,
            "decision": decision.outcome,
            "reason": decision.reason,
            "previous_version": incumbent.version if incumbent else "none",
            "min_roc_auc": bar,
            **{f"val_{m}": float(value) for m, value in champion.validation_metrics.items() if value is not None},
            **{f"test_{m}": float(value) for m, value in champion.test_metrics.items() if value is not None},
            "candidates": dg.MetadataValue.md("\n".join([header, "|" + "---|" * (3 + len(METRICS)), *rows])),
            "registry": dg.MetadataValue.url(f"{ui_url}/#/models/{REGISTERED_MODEL_NAME}"),
        },
    )


def _shown(value) -> str:
    return "-" if value is None else f"{value:.3f}"
