"""Run profiles: the full real data set by default, a small real subset for smoke runs.

A profile is chosen once, where the code location is built (`build_defs(profile)`), and
passed down: the assets receive it as the `profile` resource, the launchpad defaults of the
model assets and of the election are made from it. Nothing below the definitions reads the environment for it.
"""

from typing import Any

import dagster as dg


class Profile(dg.ConfigurableResource):
    """What differs between a full run and a smoke run."""

    name: str
    image_size: int
    """Side of the preprocessed uint8 arrays (and of the models' input)."""
    max_images_per_class: int | None = None
    """Cap per split and class, taken in sorted-path order; None keeps every image."""
    training_overrides: dict[str, Any] = {}
    """Training settings that replace every model's defaults in this profile."""
    min_champion_roc_auc: float = 0.80
    """Default of `ChampionConfig.min_roc_auc`: the validation ROC-AUC a champion must reach."""
    min_images_per_class: int = 100
    """Default of `DataGatesConfig.min_images_per_class`: fewer images in a split and class stop a retrain."""
    validation_fraction: float = 0.2
    """Default of `SplitConfig.validation_fraction`: the expected share of `train` held out."""
    min_comparison_images: int = 100
    """Default of `ChampionConfig.min_comparison_images`: images per class a promotion over a champion needs."""


PROFILES = {
    "default": Profile(name="default", image_size=224),
    "smoke": Profile(
        name="smoke",
        image_size=64,
        max_images_per_class=24,
        training_overrides={
            "epochs": 1,
            "batch_size": 16,
            "image_size": 32,
            "k_folds": 2,
            "early_stopping_patience": 0,
            "run_eagerly": True,
        },
        min_champion_roc_auc=0.0,  # one epoch on 38 images may rank no better than chance; tests raise it in config
        min_images_per_class=4,  # the suites copy a few real images per class
        validation_fraction=0.5,  # about 12 of each class's 24 training images: enough for a paired comparison's shape
        min_comparison_images=3,  # a smoke run exercises the rule; 100 per class applies to real data
    ),
}


def profile_named(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"SKIN_CANCER_PROFILE={name!r} is not a profile; choose one of {sorted(PROFILES)}")
    return PROFILES[name]
