"""Training and evaluation shared by every model in the zoo."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

from skin_cancer_assets.model_zoo import ModelSpec, build_model
from skin_cancer_assets.training_config import EnsembleConfig, TrainingConfig
from skin_cancer_contract.evaluation import evaluate, threshold_for_accuracy, threshold_for_recall

EpochLogger = Callable[[str, int, dict[str, float]], None]
"""Called as (run label, epoch, metrics) after every epoch."""


def limit_threads(threads: int) -> None:
    """Keep TensorFlow to `threads` cores so parallel training steps do not oversubscribe."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TensorFlow already started in this process (in-process runs); keep its setting


def threads_per_training_step(parallel_steps: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, parallel_steps))


@dataclass
class TrainedModel:
    model: keras.Model
    history: dict[str, list[float]]
    """Per-epoch metrics; for cross-validated models, the folds' histories averaged."""
    threshold: float
    """The served operating point: chosen on validation for the target malignant recall, with its margin."""
    accuracy_threshold: float
    """The second operating point, reported: the validation threshold with the most correct calls."""
    validation_metrics: dict[str, float]
    fold_metrics: list[dict[str, float]]
    margin_specificity_cost: float
    """Validation specificity lost to the recall margin: at the threshold without it, less at `threshold`."""
    validation_probabilities: np.ndarray
    """The model's outputs on the shared validation split, the reference of production's."""


def train(
    spec: ModelSpec,
    config: TrainingConfig,
    images: np.ndarray,
    labels: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray],
    log_epoch: EpochLogger,
) -> TrainedModel:
    """Train on the fitted rows of `rows` (fitted, held out); the held-out rows, the validation split
    every model class shares, early-stop the single models and set every threshold on the served
    model's own outputs."""
    import keras

    keras.utils.set_random_seed(config.seed)
    train_idx, val_idx = rows
    if spec.cross_validated:
        model, history, fold_metrics = _train_cross_validated(spec, config, images, labels, train_idx, log_epoch)
    else:
        model, history = _fit(spec, config, images, labels, train_idx, val_idx, spec.name, lambda e, m: log_epoch("", e, m))
        fold_metrics = []
    return _with_threshold(model, history, fold_metrics, config, images[val_idx], labels[val_idx])


def combine(
    spec: ModelSpec, config: EnsembleConfig, members: list[keras.Model], images: np.ndarray, labels: np.ndarray
) -> TrainedModel:
    """`ensemble_model` of the trained `members`, its threshold set on the validation images and
    labels like any trained model's. Nothing is fitted."""
    model = ensemble_model(spec, members, images.shape[1:])
    return _with_threshold(model, {}, [], config, images, labels)


def ensemble_model(spec: ModelSpec, members: list[keras.Model], input_shape: tuple[int, ...]) -> keras.Model:
    """One model that serves the mean of the `members`' log-odds.

    Log-odds rather than probabilities: a member that is sure (0.999) is not outvoted by one that
    is unsure (0.6). Each member must end in build_model's sigmoid `malignant` layer; the combined
    model is made of Keras layers only, so anything that loads a zoo model loads it too.
    """
    import keras

    inputs = keras.Input(shape=input_shape, dtype="uint8", name="image")
    log_odds = []
    for member in members:
        output = member.get_layer("malignant")
        if not (isinstance(output, keras.layers.Dense) and output.activation is keras.activations.sigmoid):
            raise ValueError(f"{spec.name}: member {member.name} does not end in a sigmoid Dense layer `malignant` "
                             "(a cross-validated model averages its folds' probabilities); it cannot join an ensemble")
        features = keras.Model(member.inputs, output.input, name=member.name)(inputs)
        member_log_odds = keras.layers.Dense(1, name=f"{member.name}_log_odds")
        log_odds.append(member_log_odds(features))
        member_log_odds.set_weights(output.get_weights())
    mean = keras.layers.Average(name="mean_log_odds")(log_odds)
    return keras.Model(inputs, keras.layers.Activation("sigmoid", name="malignant")(mean), name=spec.name)


def _with_threshold(model, history, fold_metrics, config: TrainingConfig | EnsembleConfig, val_images, val_labels) -> TrainedModel:
    """The model's threshold, metrics and outputs on its validation images."""
    val_probs = predict(model, val_images, config.batch_size)
    threshold = threshold_for_recall(val_labels, val_probs, config.target_recall, config.recall_confidence)
    metrics = evaluate(val_labels, val_probs, threshold)
    without_margin = evaluate(val_labels, val_probs, threshold_for_recall(val_labels, val_probs, config.target_recall))
    margin_cost = without_margin["specificity"] - metrics["specificity"]
    accuracy_threshold = threshold_for_accuracy(val_labels, val_probs)
    return TrainedModel(model, history, threshold, accuracy_threshold, metrics, fold_metrics, margin_cost, val_probs)


def _train_cross_validated(spec, config, images, labels, train_idx, log_epoch):
    """k stratified folds of `train_idx`, each early-stopped on its own held-out fold; the model
    serves the folds' average. Returns it, the mean history and each fold's held-out metrics."""
    import keras
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=config.k_folds, shuffle=True, random_state=config.seed)
    fold_models, histories, fold_metrics = [], [], []
    for fold, (fold_train, fold_val) in enumerate(folds.split(train_idx, labels[train_idx])):
        fold_train, fold_val = train_idx[fold_train], train_idx[fold_val]
        model, history = _fit(
            spec, config, images, labels, fold_train, fold_val, f"{spec.name}_fold_{fold}",
            lambda e, m, f=fold: log_epoch(f"fold_{f}_", e, m),
        )
        fold_metrics.append(evaluate(labels[fold_val], predict(model, images[fold_val], config.batch_size), 0.5))
        fold_models.append(model)
        histories.append(history)
    inputs = keras.Input(shape=images.shape[1:], dtype="uint8", name="image")
    averaged = keras.layers.Average(name="malignant")([m(inputs) for m in fold_models])
    return keras.Model(inputs, averaged, name=spec.name), _mean_history(histories), fold_metrics


def _fit(spec, config, images, labels, train_idx, val_idx, name, on_epoch) -> tuple[keras.Model, dict]:
    import keras

    model = build_model(spec, config, images.shape[1], name)
    phases = _phases(spec, config)
    fitted_part, inputs = _part_that_trains(model, spec, config, phases, images)
    steps_per_epoch = math.ceil(len(train_idx) / config.batch_size)
    callbacks = [keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: on_epoch(epoch, dict(logs)))]
    if config.early_stopping_patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_auc", mode="max", patience=config.early_stopping_patience, restore_best_weights=True
            )
        )
    history = {}
    for epochs, learning_rate, first_trained_block in phases:
        if spec.block_of_layer:
            _train_backbone_from(model, spec.block_of_layer, first_trained_block)
        fitted_part.compile(  # again in every phase: Keras applies `trainable` changes when compiling
            optimizer=_optimizer(config, learning_rate, decay_steps=len(epochs) * steps_per_epoch),
            loss="binary_crossentropy",
            metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
            jit_compile=False,  # XLA compiles for minutes on a CPU before the first step
            run_eagerly=config.run_eagerly,
        )
        fitted = fitted_part.fit(
            inputs[train_idx],
            labels[train_idx],
            validation_data=(inputs[val_idx], labels[val_idx]),
            initial_epoch=epochs.start,
            epochs=epochs.stop,
            batch_size=config.batch_size,
            class_weight=_class_weights(labels[train_idx]) if config.class_weighting else None,
            callbacks=callbacks,
            verbose=0,
        )
        for metric, values in fitted.history.items():
            history.setdefault(metric, []).extend(float(v) for v in values)
    return model, history


def _part_that_trains(model: keras.Model, spec: ModelSpec, config: TrainingConfig, phases, images: np.ndarray):
    """The part of `model` that fit() has to run, and its inputs for every row of `images`.

    Backbone blocks below the lowest one any phase trains stay frozen throughout, batch norms
    included, so without augmentation their output for an image is the same in every epoch: it is
    computed once here, and the epochs run only the layers above. Both parts share `model`'s layers,
    so training the upper part trains the model that is served.
    """
    import keras

    if spec.block_of_layer is None or config.augment:  # random transforms sit below the backbone
        return model, images
    first_trained = min(first_block for _, _, first_block in phases)
    frozen = [layer for layer in model.layers if (block := spec.block_of_layer(layer.name)) is not None and block < first_trained]
    if not frozen:
        return model, images
    trunk_output = frozen[-1].output  # the last frozen layer in graph order: all that flows into the trained blocks
    trunk = keras.Model(model.inputs, trunk_output)
    return keras.Model(trunk_output, model.outputs), trunk.predict(images, batch_size=config.batch_size, verbose=0)


def _phases(spec: ModelSpec, config: TrainingConfig) -> list[tuple[range, float, float]]:
    """(epochs, learning rate, first backbone block that trains) of each training phase.

    A pretrained backbone first stays frozen while the new head learns, so the head's first, large
    gradients cannot wreck the pretrained features; then its top blocks fine-tune at a lower rate.
    Other models train whole in one phase.
    """
    if spec.block_of_layer is None:
        if config.frozen_epochs or config.fine_tune_learning_rate is not None:
            raise ValueError(f"{spec.name} has no pretrained backbone: frozen_epochs and fine_tune_learning_rate do not apply")
        return [(range(config.epochs), config.learning_rate, 0)]
    frozen = min(config.frozen_epochs, config.epochs)
    fine_tune_rate = config.learning_rate if config.fine_tune_learning_rate is None else config.fine_tune_learning_rate
    phases = [
        (range(frozen), config.learning_rate, math.inf),  # no block trains
        (range(frozen, config.epochs), fine_tune_rate, config.fine_tune_from_block),
    ]
    return [phase for phase in phases if phase[0]]


def _train_backbone_from(model: keras.Model, block_of_layer: Callable[[str], int | None], first_block: float) -> None:
    """Backbone layers train from block `first_block` up; batch normalization stays frozen everywhere:
    it then normalizes with the pretrained statistics rather than those of small, skewed batches."""
    import keras

    for layer in model.layers:
        block = block_of_layer(layer.name)
        if block is not None:
            layer.trainable = block >= first_block and not isinstance(layer, keras.layers.BatchNormalization)


def _optimizer(config: TrainingConfig, learning_rate: float, decay_steps: int) -> keras.optimizers.Optimizer:
    import keras

    if config.cosine_decay:
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=decay_steps)
    return keras.optimizers.get({"class_name": config.optimizer, "config": {"learning_rate": learning_rate}})


def _class_weights(labels: np.ndarray) -> dict[int, float]:
    counts = np.bincount(labels, minlength=2)
    return {c: len(labels) / (2.0 * counts[c]) for c in (0, 1)}


def _mean_history(histories: list[dict]) -> dict[str, list[float]]:
    epochs = min(len(next(iter(h.values()))) for h in histories)
    return {k: [float(np.mean([h[k][e] for h in histories])) for e in range(epochs)] for k in histories[0]}


def predict(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Probability of malignant for each image, as float32."""
    return model.predict(images, batch_size=batch_size, verbose=0).reshape(-1).astype(np.float32)
