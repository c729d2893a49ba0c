"""The training group: per model class, the trained network and its candidate record, made by
`model_asset` from the zoo."""

import inspect
import os
import time

import dagster as dg
import numpy as np

from resources.mlflow_tracking import MlflowTracking, artifact_url, run_url
from skin_cancer_assets import figures, model_card, training
from skin_cancer_assets.election import Candidate
from skin_cancer_assets.model_zoo import ZOO, ModelSpec, build_model
from skin_cancer_assets.profiles import Profile
from skin_cancer_assets.splitting import rows_of
from skin_cancer_assets.training_config import config_class_for
from skin_cancer_assets.versioning import code_version
from skin_cancer_contract.evaluation import METRICS, evaluate, split_digest, with_intervals
from skin_cancer_contract.registry import REGISTERED_MODEL_NAME, VALIDATION_PROBABILITIES

LEARNING_CURVES, CONFUSION_MATRIX, TEST_CURVES = "learning_curves.png", "confusion_matrix.png", "test_curves.png"
SERVED_POINT, ACCURACY_POINT = "served (malignant recall 0.90 with margin)", "accuracy-maximising (reported)"
TRAINING_IMAGES = "training_images.json"
"""Run artifact: the sha256 of every image the network was fitted on, so a later election can
score it only on images it has never seen."""


def candidate_key(model_name: str) -> str:
    """The asset holding the candidate record of `model_name`."""
    return f"{model_name}_candidate"


def model_asset(spec: ModelSpec, profile: Profile, gpu_tags: dict) -> dg.AssetsDefinition:
    """Two assets from one step: the network `spec.name` (stored as `.keras`) and its candidate
    record for the election (JSON). The step trains (an ensemble: combines its members' networks),
    logs its own MLflow run and registers a version."""
    config_class = config_class_for(spec.name, {**spec.defaults, **profile.training_overrides}, ensemble=bool(spec.members))
    parallel_steps = min(sum(not s.members for s in ZOO), os.cpu_count() or 1)
    if spec.members:
        version = code_version(training)
    else:  # the network's whole module: a pretrained network's version covers its layout and weight loader too
        version = code_version(inspect.getmodule(spec.build_network), build_model, training)
    member_ins = {key: dg.AssetIn() for member in spec.members for key in (member, candidate_key(member))}

    @dg.multi_asset(
        name=spec.name,
        group_name="training",
        outs={
            spec.name: dg.AssetOut(description=spec.description, code_version=version, kinds={"tensorflow", "mlflow"}),
            candidate_key(spec.name): dg.AssetOut(
                description=f"What {spec.name} offers the election: registered version, validation and test "
                "metrics, and the digests of the splits they were measured on.",
                code_version=version,
            ),
        },
        ins=member_ins,
        op_tags={**spec.op_tags, **(gpu_tags if spec.wants_gpu else {})},
    )
    def _train_asset(
        context: dg.AssetExecutionContext,
        config: config_class,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        train_image_ids: list[str],
        validation_split: dict,
        test_images: np.ndarray,
        test_labels: np.ndarray,
        test_image_ids: list[str],
        mlflow: MlflowTracking,  # opens the Dagster run's MLflow run, in which this step's run nests
        **members,  # an ensemble's member networks and their candidate records
    ):
        training.limit_threads(training.threads_per_training_step(parallel_steps))
        started = time.monotonic()
        fitted_rows, validation_rows = rows_of(train_image_ids, set(validation_split["validation_images"]))
        validation_ids = [train_image_ids[row] for row in validation_rows]
        validation_digest = validation_split["digest"]
        member_tags = _members_on(validation_digest, spec, members)
        with mlflow.start_run(run_name=spec.name, nested=True) as run:
            mlflow.set_tags({"model_class": spec.name, "dagster_run_id": context.run_id, **member_tags})
            mlflow.log_params({
                **config.model_dump(),
                "model_class": spec.name,
                "train_images": len(train_labels),
                "validation_images": len(validation_rows),
                "split_seed": validation_split["split_seed"],
                "validation_fraction": validation_split["validation_fraction"],
            })
            mlflow.log_dict({"sha256": [train_image_ids[row] for row in fitted_rows]}, TRAINING_IMAGES)

            def log_epoch(prefix: str, epoch: int, metrics: dict[str, float]) -> None:
                mlflow.log_metrics({f"{prefix}{k}": float(v) for k, v in metrics.items()}, step=epoch)
                shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
                context.log.info(f"{spec.name} {prefix}epoch {epoch + 1}/{config.epochs}: {shown}")

            if spec.members:
                networks = [members[member] for member in spec.members]
                trained = training.combine(spec, config, networks, train_images[validation_rows], train_labels[validation_rows])
            else:
                trained = training.train(spec, config, train_images, train_labels, (fitted_rows, validation_rows), log_epoch)
            validation_probabilities = [round(float(p), 6) for p in trained.validation_probabilities]
            mlflow.log_dict({"sha256": validation_ids, "probability_malignant": validation_probabilities}, VALIDATION_PROBABILITIES)
            probs = training.predict(trained.model, test_images, config.batch_size)
            test = with_intervals(test_labels, probs, trained.threshold)
            at_accuracy_point = with_intervals(test_labels, probs, trained.accuracy_threshold)
            points = {SERVED_POINT: (trained.threshold, test), ACCURACY_POINT: (trained.accuracy_threshold, at_accuracy_point)}
            distinct = _distinct_test_figures(test_image_ids, validation_split["near_duplicate_test_images"], test_labels, probs, trained.threshold)
            seconds = time.monotonic() - started
            evaluation = {
                **{f"test_{k}": v for k, v in test.items()},
                **distinct,
                **{f"accuracy_point_test_{k}": v for k, v in at_accuracy_point.items()},
                **{f"val_{k}": v for k, v in trained.validation_metrics.items()},
                "threshold": trained.threshold,
                "accuracy_threshold": trained.accuracy_threshold,
                "val_margin_specificity_cost": trained.margin_specificity_cost,
                "training_seconds": seconds,
            }
            for fold, fold_metrics in enumerate(trained.fold_metrics):
                evaluation.update({f"fold_{fold}_val_{k}": v for k, v in fold_metrics.items()})
            if trained.fold_metrics:
                for name in ("roc_auc", "accuracy"):
                    evaluation[f"cv_mean_val_{name}"] = float(np.mean([f[name] for f in trained.fold_metrics]))
            # Logged after the last epoch's step, so the logged model links these and not the curves.
            final_step = 0 if spec.members else config.epochs
            mlflow.log_metrics(evaluation, step=final_step)
            pictures = {
                CONFUSION_MATRIX: figures.confusion_matrix(test, f"{spec.name}: test set"),
                TEST_CURVES: figures.test_curves(
                    test_labels, probs, {"served": trained.threshold, "accuracy": trained.accuracy_threshold}, f"{spec.name}: test set"
                ),
            }
            if trained.history:  # an ensemble has no epochs of its own
                pictures[LEARNING_CURVES] = figures.learning_curves(trained.history, f"{spec.name}: learning curves")
            for path, figure in pictures.items():
                mlflow.log_figure(figure, path)
                figures.close(figure)
            test_digest = split_digest(test_images, test_labels)
            registered = _log_and_register(
                trained.model,
                spec.name,
                test_images[:1],
                probs[:1],
                step=final_step,
                tags={
                    "model_class": spec.name,
                    "threshold": f"{trained.threshold:.6f}",
                    "accuracy_threshold": f"{trained.accuracy_threshold:.6f}",
                    "image_size": str(test_images.shape[1]),
                    "validation_digest": validation_digest,
                    "test_digest": test_digest,
                    "dagster_run_id": context.run_id,
                    **member_tags,
                },
            )
            data = {"fitted": len(fitted_rows), "validation": len(validation_rows), "test": len(test_labels), "split_digest": validation_digest}
            near_duplicates = len(validation_split["near_duplicate_test_images"])
            card = model_card.model_card(spec.name, spec.description, data, points, near_duplicates, distinct)
            mlflow.MlflowClient().update_model_version(REGISTERED_MODEL_NAME, registered, description=card)
            candidate = Candidate(
                model_class=spec.name,
                version=registered,
                run_id=run.info.run_id,
                threshold=trained.threshold,
                validation_digest=validation_digest,
                validation_metrics={name: float(trained.validation_metrics[name]) for name in METRICS},
                test_digest=test_digest,
                test_metrics={name: float(test[name]) for name in METRICS},
                validation_probabilities=dict(zip(validation_ids, validation_probabilities)),
            )

        context.log.info(
            f"{spec.name}: validation ROC-AUC {candidate.roc_auc:.3f}; test ROC-AUC {test['roc_auc']:.3f}, "
            f"accuracy {test['accuracy']:.3f}, malignant recall {test['recall_malignant']:.3f} "
            f"at threshold {trained.threshold:.3f}; version {registered}"
        )
        yield dg.Output(
            trained.model,
            output_name=spec.name,
            metadata={
                "mlflow_run_id": run.info.run_id,
                "mlflow_run": dg.MetadataValue.url(run_url(mlflow.ui_url, run.info.experiment_id, run.info.run_id)),
                "mlflow_model_version": int(registered),
                "threshold": trained.threshold,
                "accuracy_threshold": trained.accuracy_threshold,
                "operating_points": dg.MetadataValue.md(model_card.operating_points_table(points)),
                "test_roc_auc_interval": f"{test['roc_auc_low']:.3f}-{test['roc_auc_high']:.3f}",
                "margin_specificity_cost": dg.MetadataValue.float(trained.margin_specificity_cost),
                "training_seconds": round(seconds, 1),
                "epochs_run": len(trained.history.get("loss", [])),
                **{f"val_{name}": value for name, value in candidate.validation_metrics.items()},
                **{f"test_{name}": value for name, value in candidate.test_metrics.items()},
                **distinct,
                "test_confusion": dg.MetadataValue.json(
                    {k: test[k] for k in ("true_negatives", "false_positives", "false_negatives", "true_positives")}
                ),
                **(
                    {"fold_val_roc_auc": dg.MetadataValue.json([round(f["roc_auc"], 4) for f in trained.fold_metrics])}
                    if trained.fold_metrics
                    else {}
                ),
                **{
                    path.removesuffix(".png"): dg.MetadataValue.url(artifact_url(mlflow.ui_url, run.info.run_id, path))
                    for path in pictures
                },
            },
        )
        yield dg.Output(
            candidate.to_record(),
            output_name=candidate_key(spec.name),
            metadata={
                "version": int(registered),
                "validation_roc_auc": candidate.roc_auc,
                "validation_digest": candidate.validation_digest,
            },
        )

    return _train_asset


def _distinct_test_figures(test_ids: list[str], near_duplicates: list[str], labels, probs, threshold: float) -> dict[str, float]:
    """The test figures without the test images that have a near-duplicate among the training
    images (`distinct_test_*`): what the figures are worth if those were memorised."""
    shared = set(near_duplicates)
    keep = np.array([image not in shared for image in test_ids], dtype=bool)
    figures = evaluate(labels[keep], probs[keep], threshold)
    return {"distinct_test_images": int(keep.sum()), **{f"distinct_test_{name}": figures[name] for name in METRICS}}


def _members_on(validation_digest: str, spec: ModelSpec, members: dict) -> dict[str, str]:
    """The member versions an ensemble combines, as tags; fails unless each member was validated on
    the same held-out images as the ensemble, so no member has trained on its validation rows."""
    records = {member: Candidate.from_record(members[candidate_key(member)]) for member in spec.members}
    for member, record in records.items():
        if record.validation_digest != validation_digest:
            raise dg.Failure(
                f"{spec.name}: {record.label} was validated on other images than {spec.name}'s validation split "
                f"(trained before the data or the validation split changed); "
                f"train {member} with the same settings, then {spec.name} again"
            )
    return {f"member_{member}": record.version for member, record in records.items()}


def _log_and_register(
    model, name: str, example_images: np.ndarray, example_probs: np.ndarray, step: int, tags: dict[str, str]
) -> str:
    """Log the network as an MLflow logged model (the run's metrics at `step` linked to it) and
    register it as a new version carrying `tags`, which the election reads back. Returns the version.

    No input example: `mlflow.keras.save_model` (MLflow 3.17) writes it before it creates the
    model's folder, so `log_model` with an example fails; the signature documents the input.
    """
    import keras
    import mlflow.keras
    import tensorflow as tf
    from mlflow.models import infer_signature

    info = mlflow.keras.log_model(
        model,
        name=name,
        signature=infer_signature(example_images, example_probs.reshape(-1, 1)),
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
        registered_model_name=REGISTERED_MODEL_NAME,
        step=step,
        tags=tags,
    )
    return str(info.registered_model_version)


def model_assets(profile: Profile, gpu_tags: dict) -> list[dg.AssetsDefinition]:
    return [model_asset(spec, profile, gpu_tags) for spec in ZOO]
