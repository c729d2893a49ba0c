"""Training settings shown in the Dagster launchpad.

The field names and defaults are the seed pipeline's `model_params`; each model in the zoo
and each profile may replace some defaults (see `config_class_for`).
"""

from copy import copy
from typing import TypeVar

import dagster as dg
from pydantic import Field, create_model
from pydantic.fields import FieldInfo

ConfigT = TypeVar("ConfigT", bound=dg.Config)


class TrainingConfig(dg.Config):
    epochs: int = Field(default=2, description="Passes over the training data (upper bound with early stopping).")
    batch_size: int = 64
    learning_rate: float = Field(default=1e-5, description="Applied to the optimizer.")
    optimizer: str = Field(default="adam", description="Any Keras optimizer name.")
    cosine_decay: bool = Field(
        default=False, description="Decay the learning rate to zero along a cosine over `epochs`: calmer last epochs."
    )
    activation: str = "relu"
    kernel_initializer_glob: str = "glorot_uniform"
    kernel_initializer_norm: str = "normal"
    pooling: str = Field(default="avg", description="Global pooling of the ResNet50 backbone.")
    image_size: int = Field(
        default=224, description="Side the model resizes its input to before the network (inside the model)."
    )
    frozen_epochs: int = Field(
        default=0,
        description="Models with a pretrained backbone: the first of `epochs` train only the head on the backbone's "
        "frozen features, at `learning_rate`.",
    )
    fine_tune_from_block: int = Field(
        default=0,
        description="Models with a pretrained backbone: after `frozen_epochs`, its blocks from this one up train too "
        "(0: all of them); batch normalization keeps its pretrained statistics.",
    )
    fine_tune_learning_rate: float | None = Field(
        default=None, description="Learning rate after `frozen_epochs`; empty: `learning_rate`."
    )
    augment: bool = Field(default=False, description="Random flips, rotations, zoom and contrast while training.")
    class_weighting: bool = Field(default=False, description="Weight classes inversely to their frequency.")
    early_stopping_patience: int = Field(
        default=0, description="Epochs without validation AUC gain before stopping; 0 disables."
    )
    k_folds: int = Field(default=3, description="Folds of cross-validated models.")
    target_recall: float = Field(
        default=0.90, description="Malignant recall the decision threshold is chosen for, on validation data."
    )
    recall_confidence: float = Field(
        default=0.95,
        ge=0.0,
        lt=1.0,
        description="Confidence that `target_recall` holds on unseen images: the threshold is lowered until the "
        "lower bound of the validation recall's one-sided Wilson interval reaches the target (0: no margin).",
    )
    run_eagerly: bool = Field(
        default=False, description="Skip graph tracing: faster only for a handful of batches (smoke runs)."
    )
    seed: int = Field(
        default=42,
        description="Initial weights, dropout, shuffling, folds and augmentation; the validation split is the "
        "`validation_split` asset's (SplitConfig).",
    )


def with_defaults(base: type[ConfigT], class_name: str, defaults: dict) -> type[ConfigT]:
    """A subclass of the launchpad config `base` whose defaults are replaced by `defaults`;
    each field keeps its type and description."""
    unknown = set(defaults) - set(base.model_fields)
    if unknown:
        raise ValueError(f"unknown settings for {class_name}: {sorted(unknown)}")
    fields = {name: (base.model_fields[name].annotation, _with_default(base.model_fields[name], value)) for name, value in defaults.items()}
    return create_model(class_name, __base__=base, **fields)


def _with_default(field: FieldInfo, value) -> FieldInfo:
    """A copy of `field` (type, description, bounds) whose default is `value`."""
    copied = copy(field)
    copied.default = value
    return copied


EnsembleConfig = create_model(
    "EnsembleConfig",
    __base__=dg.Config,
    **{
        name: (TrainingConfig.model_fields[name].annotation, TrainingConfig.model_fields[name])
        for name in ("batch_size", "target_recall", "recall_confidence")
    },
)
"""The TrainingConfig settings an ensemble reads: it fits nothing, so epochs, learning rates and the
like would only mislead in its launchpad."""


def config_class_for(model_name: str, defaults: dict, ensemble: bool = False) -> type[dg.Config]:
    """This model's launchpad config, named for it: TrainingConfig with its defaults, or for an
    ensemble EnsembleConfig, leaving out the defaults that do not apply to one (a profile's epochs)."""
    if ensemble:
        defaults = {name: value for name, value in defaults.items() if name in EnsembleConfig.model_fields}
    base = EnsembleConfig if ensemble else TrainingConfig
    suffix = "Config" if ensemble else "TrainingConfig"
    return with_defaults(base, "".join(part.title() for part in model_name.split("_")) + suffix, defaults)
