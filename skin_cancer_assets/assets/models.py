"""The training group: one asset per model class, all made by `model_asset` from the zoo."""

import hashlib
import os
import time

import dagster as dg
import mlflow
import numpy as np

from resources.mlflow_tracking import REGISTERED_MODEL_NAME, tracking_ui_url
from skin_cancer_assets import figures, training
from skin_cancer_assets.model_zoo import ZOO, ModelSpec, build_model
from skin_cancer_assets.profiles import active_profile
from skin_cancer_assets.training_config import config_class_for
from skin_cancer_assets.versioning import code_version

TEST_METRICS = ("accuracy", "roc_auc", "recall_malignant", "specificity", "precision")


def holdout_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """Identifies the test set, so scores are only compared when measured on the same images."""
    digest = hashlib.sha256(labels.tobytes())
    digest.update(str(images.shape).encode())
    digest.update(images[:: max(1, len(images) // 64)].tobytes())
    return digest.hexdigest()[:16]


def model_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    """A Dagster asset that trains `spec`, logs it to its own MLflow run and registers it."""
    config_class = config_class_for(spec.name, {**spec.defaults, **active_profile().training_overrides})
    parallel_steps = min(len(ZOO), os.cpu_count() or 1)

    @dg.asset(
        name=spec.name,
        group_name="training",
        description=spec.description,
        code_version=code_version(spec.build_network, build_model, training),
        required_resource_keys={"mlflow"},
        op_tags=spec.op_tags,
        kinds={"tensorflow", "mlflow"},
    )
    def _train_asset(
        context: dg.AssetExecutionContext,
        config: config_class,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        test_images: np.ndarray,
        test_labels: np.ndarray,
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
            test = training.evaluate(test_labels, probs, trained.threshold)
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
            mlflow.log_figure(curves, "learning_curves.png")
            mlflow.log_figure(confusion, "confusion_matrix.png")
            version = _register(trained.model, test_images[:1], probs[:1])
            client = mlflow.MlflowClient()
            for key, value in {
                "model_class": spec.name,
                "threshold": f"{trained.threshold:.6f}",
                "image_size": str(test_images.shape[1]),
                "test_set_digest": holdout_digest(test_images, test_labels),
                "dagster_run_id": context.run_id,
            }.items():
                client.set_model_version_tag(REGISTERED_MODEL_NAME, version, key, value)

        context.log.info(
            f"{spec.name}: test ROC-AUC {test['roc_auc']:.3f}, accuracy {test['accuracy']:.3f}, "
            f"malignant recall {test['recall_malignant']:.3f} at threshold {trained.threshold:.3f}; version {version}"
        )
        experiment_id = run.info.experiment_id
        return dg.Output(
            trained.model,
            metadata={
                "mlflow_run_id": run.info.run_id,
                "mlflow_run": dg.MetadataValue.url(
                    f"{tracking_ui_url(mlflow.get_tracking_uri())}/#/experiments/{experiment_id}/runs/{run.info.run_id}"
                ),
                "mlflow_model_version": int(version),
                "threshold": trained.threshold,
                "training_seconds": round(seconds, 1),
                "epochs_run": len(trained.history.get("loss", [])),
                **{f"test_{name}": float(test[name]) for name in TEST_METRICS},
                "test_confusion": dg.MetadataValue.json(
                    {k: test[k] for k in ("true_negatives", "false_positives", "false_negatives", "true_positives")}
                ),
                **(
                    {"fold_val_roc_auc": dg.MetadataValue.json([round(f["roc_auc"], 4) for f in trained.fold_metrics])}
                    if trained.fold_metrics
                    else {}
                ),
                "learning_curves": figures.as_markdown(curves),
                "confusion_matrix": figures.as_markdown(confusion),
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


model_assets = [model_asset(spec) for spec in ZOO]
