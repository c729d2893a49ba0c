"""The training group: one asset per model class, all made by `model_asset` from the zoo."""

import os
import time

import dagster as dg
import mlflow
import numpy as np

from resources.mlflow_tracking import MlflowTracking, artifact_url, run_url
from skin_cancer_assets import figures, training
from skin_cancer_assets.model_zoo import ZOO, ModelSpec, build_model
from skin_cancer_assets.profiles import Profile
from skin_cancer_assets.training_config import config_class_for
from skin_cancer_assets.versioning import code_version
from skin_cancer_contract.evaluation import METRICS, evaluate, split_digest
from skin_cancer_contract.registry import REGISTERED_MODEL_NAME

FIGURES = ("learning_curves.png", "confusion_matrix.png")


def model_asset(spec: ModelSpec, profile: Profile, gpu_tags: dict) -> dg.AssetsDefinition:
    """A Dagster asset that trains `spec`, logs it to its own MLflow run and registers it."""
    config_class = config_class_for(spec.name, {**spec.defaults, **profile.training_overrides})
    parallel_steps = min(len(ZOO), os.cpu_count() or 1)

    @dg.asset(
        name=spec.name,
        group_name="training",
        description=spec.description,
        code_version=code_version(spec.build_network, build_model, training),
        op_tags={**spec.op_tags, **(gpu_tags if spec.wants_gpu else {})},
        kinds={"tensorflow", "mlflow"},
    )
    def _train_asset(
        context: dg.AssetExecutionContext,
        config: config_class,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        test_images: np.ndarray,
        test_labels: np.ndarray,
        mlflow: MlflowTracking,  # opens the Dagster run's MLflow run, in which this step's run nests
    ) -> dg.Output:
        training.limit_threads(training.threads_per_training_step(parallel_steps))
        started = time.monotonic()
        with mlflow.start_run(run_name=spec.name, nested=True) as run:
            mlflow.set_tags({"model_class": spec.name, "dagster_run_id": context.run_id})
            mlflow.log_params({**config.model_dump(), "model_class": spec.name, "train_images": len(train_labels)})

            def log_epoch(prefix: str, epoch: int, metrics: dict[str, float]) -> None:
                mlflow.log_metrics({f"{prefix}{k}": float(v) for k, v in metrics.items()}, step=epoch)
                shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
                context.log.info(f"{spec.name} {prefix}epoch {epoch + 1}/{config.epochs}: {shown}")

            trained = training.train(spec, config, train_images, train_labels, log_epoch)
            probs = training.predict(trained.model, test_images, config.batch_size)
            test = evaluate(test_labels, probs, trained.threshold)
            seconds = time.monotonic() - started
            for fold, fold_metrics in enumerate(trained.fold_metrics):
                mlflow.log_metrics({f"fold_{fold}_val_{k}": v for k, v in fold_metrics.items()})
            if trained.fold_metrics:
                for name in ("roc_auc", "accuracy"):
                    mlflow.log_metric(f"cv_mean_val_{name}", float(np.mean([f[name] for f in trained.fold_metrics])))
            mlflow.log_metrics(
                {
                    **{f"test_{k}": v for k, v in test.items()},
                    **{f"val_{k}": v for k, v in trained.validation_metrics.items()},
                    "threshold": trained.threshold,
                    "training_seconds": seconds,
                }
            )
            curves = figures.learning_curves(trained.history, f"{spec.name}: learning curves")
            confusion = figures.confusion_matrix(test, f"{spec.name}: test set")
            for figure, path in zip((curves, confusion), FIGURES):
                mlflow.log_figure(figure, path)
                figures.close(figure)
            version = _register(trained.model, test_images[:1], probs[:1])
            client = mlflow.MlflowClient()
            for key, value in {
                "model_class": spec.name,
                "threshold": f"{trained.threshold:.6f}",
                "image_size": str(test_images.shape[1]),
                "test_set_digest": split_digest(test_images, test_labels),
                "dagster_run_id": context.run_id,
            }.items():
                client.set_model_version_tag(REGISTERED_MODEL_NAME, version, key, value)

        context.log.info(
            f"{spec.name}: test ROC-AUC {test['roc_auc']:.3f}, accuracy {test['accuracy']:.3f}, "
            f"malignant recall {test['recall_malignant']:.3f} at threshold {trained.threshold:.3f}; version {version}"
        )
        return dg.Output(
            trained.model,
            metadata={
                "mlflow_run_id": run.info.run_id,
                "mlflow_run": dg.MetadataValue.url(run_url(mlflow.ui_url, run.info.experiment_id, run.info.run_id)),
                "mlflow_model_version": int(version),
                "threshold": trained.threshold,
                "training_seconds": round(seconds, 1),
                "epochs_run": len(trained.history.get("loss", [])),
                **{f"test_{name}": float(test[name]) for name in METRICS},
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
                    for path in FIGURES
                },
            },
        )

    return _train_asset


def _register(model, example_images: np.ndarray, example_probs: np.ndarray) -> str:
    """Log the Keras model with a signature and an input example; register it as a new version.

    `mlflow.keras.log_model` writes the input example before creating its folder (MLflow 3.17),
    so the model is saved into a folder of ours, logged as artifacts, then registered.
    """
    import tempfile

    import keras
    import mlflow.keras
    import tensorflow as tf
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory() as folder:
        mlflow.keras.save_model(
            model,
            folder,
            signature=infer_signature(example_images, example_probs.reshape(-1, 1)),
            input_example=example_images,
            pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
        )
        mlflow.log_artifacts(folder, "model")
    run_id = mlflow.active_run().info.run_id
    return str(mlflow.register_model(f"runs:/{run_id}/model", REGISTERED_MODEL_NAME).version)


def model_assets(profile: Profile, gpu_tags: dict) -> list[dg.AssetsDefinition]:
    return [model_asset(spec, profile, gpu_tags) for spec in ZOO]
