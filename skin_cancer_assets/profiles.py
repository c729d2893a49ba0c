"""Run profiles: the full real data set by default, a small real subset for smoke runs.

The profile is chosen once per process with SKIN_CANCER_PROFILE, so the Dagster UI, the
command line and the tests all see the same defaults without code changes.
"""

import os
from dataclasses import dataclass, field

PROFILE_ENV = "SKIN_CANCER_PROFILE"


@dataclass(frozen=True)
class Profile:
    name: str
    image_size: int
    """Side of the preprocessed uint8 arrays (and of the models' input)."""
    max_images_per_class: int | None
    """Cap per split and class, taken in sorted-path order; None keeps every image."""
    training_overrides: dict = field(default_factory=dict)
    """Training settings that replace every model's defaults in this profile."""
    min_champion_roc_auc: float = 0.80
    """Quality bar of the champion's asset check."""


PROFILES = {
    "default": Profile(name="default", image_size=224, max_images_per_class=None),
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
        min_champion_roc_auc=0.0,
    ),
}


def active_profile() -> Profile:
    name = os.environ.get(PROFILE_ENV, "default")
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={name!r} is not a profile; choose one of {sorted(PROFILES)}")
    return PROFILES[name]
