"""The selection group: elect the champion from the candidates' records and move the alias.

The rules are `skin_cancer_assets.election.elect`; this asset gathers what they compare. The
candidates were all scored on today's validation split (the `validation_split` asset). The
champion is scored on the same images: what its training run logged for them, and a prediction
for images added since. Images it trained on (possible only when the split itself changed) are
left out of the comparison. Only a registry without the alias means "no champion yet"; any other
registry error fails the run before the alias moves. One election runs at a time: the step is in
the `skin_cancer_election` pool, which every instance file limits to 1.
"""

from contextlib import contextmanager
from dataclasses import dataclass, replace

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
from skin_cancer_assets.splitting import rows_of
from skin_cancer_assets.training_config import with_defaults
from skin_cancer_contract.evaluation import METRICS, evaluate
from skin_cancer_contract.imaging import resize_images
from skin_cancer_contract.registry import CHAMPION_ALIAS, REGISTERED_MODEL_NAME, VALIDATION_PROBABILITIES, version_uri

ELECTION_POOL = "skin_cancer_election"
"""Concurrency pool of the election step; the instance files limit every pool to one slot."""


class ChampionConfig(dg.Config):
    min_roc_auc: float = Field(
        default=0.0,
        description="Validation ROC-AUC the champion must reach (the blocking `quality_bar` check, "
        "evaluated before the alias moves); below it the run fails and the alias stays.",
    )
    min_improvement: float = Field(
        default=0.0,
        ge=0.0,
        description="The lower bound of the challenger's ROC-AUC gain over the champion, on the same images, "
        "must exceed this (0 or more: a challenger is never promoted on evidence that it is worse).",
    )
    confidence: float = Field(
        default=0.95, gt=0.0, lt=1.0, description="Confidence of that one-sided lower bound (DeLong's paired test)."
    )
    min_comparison_images: int = Field(
        default=100,
        ge=2,
        description="Validation images of each class both models were scored on (and the champion never trained "
        "on) that a promotion over a champion needs; with fewer, the champion stays.",
    )


def champion_config_for(profile: Profile) -> type[ChampionConfig]:
    """The launchpad's election settings, with the profile's quality bar and comparison size as defaults."""
    defaults = {"min_roc_auc": profile.min_champion_roc_auc, "min_comparison_images": profile.min_comparison_images}
    return with_defaults(ChampionConfig, "ChampionConfig", defaults)


def champion_asset(profile: Profile) -> dg.AssetsDefinition:
    """`champion_model` for `profile`: its quality bar and comparison size as launchpad defaults."""
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
        validation_split: dict,
        mlflow: MlflowTracking,
        **candidate_records: dict,
    ):
        """The best candidate on the shared validation split; the MLflow alias `champion` moves only
        when it beats the current champion on evidence and reaches the quality bar. Test metrics are
        reported."""
        client = mlflow.MlflowClient()
        rows = rows_of(train_image_ids, set(validation_split["validation_images"]))[1]
        validation = Validation(train_images[rows], train_labels[rows], [train_image_ids[row] for row in rows])
        candidates = _current_candidates([candidate_records[candidate_key(spec.name)] for spec in ZOO], validation_split["digest"], context.log)
        incumbent, comparable = _read_incumbent(client, validation, context.log)
        rules = Rules(config.min_roc_auc, config.min_improvement, config.confidence, config.min_comparison_images)
        try:
            decision = elect(candidates, incumbent, rules, comparable)
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


@dataclass(frozen=True)
class Validation:
    """Today's validation images, labels and sha256, row by row."""

    images: np.ndarray
    labels: np.ndarray
    image_ids: list[str]

    def rows(self, keep: np.ndarray) -> "Validation":
        return Validation(self.images[keep], self.labels[keep], [i for i, kept in zip(self.image_ids, keep) if kept])


def _current_candidates(records: list[dict], today: str, log) -> list[Candidate]:
    """The candidates measured on today's validation split. A model last trained on another data
    version or split (its step not run since) is left out, saying so."""
    candidates = [Candidate.from_record(record) for record in records]
    current = [c for c in candidates if c.validation_digest == today]
    for stale in (c for c in candidates if c.validation_digest != today):
        log.warning(f"{stale.label} was measured on another validation split (another data version): not a candidate "
                    f"until {stale.model_class} is trained again")
    if not current:
        raise dg.Failure(
            "no candidate was measured on today's validation split: materialize the model assets again "
            f"(the data or the split changed since they were trained); the alias `{CHAMPION_ALIAS}` was not touched"
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


def _read_incumbent(client: mlflow.MlflowClient, validation: Validation, log) -> tuple[Candidate | None, dict[str, int]]:
    """The version the alias points at, scored on today's validation images, and the labels of the
    images it may be compared on (those it never trained on); (None, {}) only when there is no alias."""
    with _registry_errors(f"read the alias `{CHAMPION_ALIAS}` of {REGISTERED_MODEL_NAME}"):
        try:
            aliases = client.get_registered_model(REGISTERED_MODEL_NAME).aliases
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return None, {}  # nothing was ever registered
        if CHAMPION_ALIAS not in aliases:
            return None, {}
        version = client.get_model_version(REGISTERED_MODEL_NAME, aliases[CHAMPION_ALIAS])
        metrics = client.get_run(version.run_id).data.metrics
        logged = {artifact.path for artifact in client.list_artifacts(version.run_id)}
        trained_on = set(_run_dict(version.run_id, TRAINING_IMAGES, logged).get("sha256", []))
        scored = _run_dict(version.run_id, VALIDATION_PROBABILITIES, logged)
    incumbent = Candidate(
        model_class=version.tags.get("model_class", "unknown"),
        version=str(version.version),
        run_id=version.run_id,
        threshold=float(version.tags.get("threshold", 0.5)),
        validation_digest=version.tags.get("validation_digest", ""),
        validation_metrics={},
        test_digest=version.tags.get("test_digest", ""),
        test_metrics={name: metrics.get(f"test_{name}") for name in METRICS},
        validation_probabilities=dict(zip(scored.get("sha256", []), scored.get("probability_malignant", []))),
    )
    unseen = np.array([image_id not in trained_on for image_id in validation.image_ids], dtype=bool)
    if not unseen.all():
        log.warning(f"champion {incumbent.label} trained on {int((~unseen).sum())} of today's validation images "
                    "(the split changed): they are left out of the comparison")
    if not unseen.any():
        raise dg.Failure(
            f"champion {incumbent.label} trained on every one of today's {len(unseen)} validation images, "
            f"so it cannot be compared; the alias `{CHAMPION_ALIAS}` was not touched"
        )
    comparable = validation.rows(unseen)
    return _scored_on(incumbent, comparable, log), dict(zip(comparable.image_ids, comparable.labels.tolist()))


def _run_dict(run_id: str, path: str, logged: set[str]) -> dict:
    return mlflow.artifacts.load_dict(f"runs:/{run_id}/{path}") if path in logged else {}


def _scored_on(incumbent: Candidate, validation: Validation, log) -> Candidate:
    """`incumbent` with its probabilities and validation metrics on `validation`: the ones its run
    logged, and a prediction (resized to its input) for images it was never scored on."""
    known = incumbent.validation_probabilities
    missing = np.array([image_id not in known for image_id in validation.image_ids], dtype=bool)
    probabilities = dict(known)
    if missing.any():
        import mlflow.keras

        log.info(f"champion {incumbent.label} scored on {int(missing.sum())} validation images its run did not score")
        with _registry_errors(f"load {incumbent.label}"):
            model = mlflow.keras.load_model(version_uri(incumbent.version))
        predicted = training.predict(model, resize_images(validation.images[missing], model.input_shape[1]))
        missing_ids = [image_id for image_id, gap in zip(validation.image_ids, missing) if gap]
        probabilities.update(zip(missing_ids, (float(p) for p in predicted)))
    today = {image_id: probabilities[image_id] for image_id in validation.image_ids}
    metrics = evaluate(validation.labels, np.array(list(today.values())), incumbent.threshold)
    return replace(incumbent, validation_metrics={name: metrics[name] for name in METRICS}, validation_probabilities=today)


def _champion_output(
    decision: Decision, incumbent: Candidate | None, candidates: list[Candidate], bar: float, ui_url: str
) -> dg.Output:
    champion = decision.champion
    record = {
        "name": REGISTERED_MODEL_NAME,
        "alias": CHAMPION_ALIAS,
        "model_uri": version_uri(champion.version),
        **_summary(champion),
        "decision": decision.outcome,
        "reason": decision.reason,
        "incumbent": _summary(incumbent) if incumbent else None,
        "min_roc_auc": bar,
        "comparison": decision.comparison.to_record() if decision.comparison else None,
        "candidates": [_summary(c) for c in candidates],
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
            **_comparison_metadata(decision),
            **{f"val_{m}": float(value) for m, value in champion.validation_metrics.items() if value is not None},
            **{f"test_{m}": float(value) for m, value in champion.test_metrics.items() if value is not None},
            "candidates": dg.MetadataValue.md("\n".join([header, "|" + "---|" * (3 + len(METRICS)), *rows])),
            "registry": dg.MetadataValue.url(f"{ui_url}/#/models/{REGISTERED_MODEL_NAME}"),
        },
    )


def _summary(candidate: Candidate) -> dict:
    """A candidate's record without its per-image probabilities."""
    return {k: v for k, v in candidate.to_record().items() if k != "validation_probabilities"}


def _comparison_metadata(decision: Decision) -> dict:
    """The evidence of a promotion or of a kept champion, as the UI shows it."""
    comparison = decision.comparison
    if comparison is None:
        return {}
    evidence = {
        "comparison_method": comparison.method,
        "comparison_malignant_images": comparison.malignant_images,
        "comparison_benign_images": comparison.benign_images,
        "comparison_confidence": comparison.confidence,
    }
    if comparison.difference is not None:
        evidence |= {"roc_auc_difference": comparison.difference, "roc_auc_difference_lower_bound": comparison.lower_bound}
    return evidence


def _shown(value) -> str:
    return "-" if value is None else f"{value:.3f}"
