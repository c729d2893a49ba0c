"""Where the served model lives in MLflow, and where serving answers."""

REGISTERED_MODEL_NAME = "skin-cancer-classifier"
CHAMPION_ALIAS = "champion"
CHAMPION_URI = f"models:/{REGISTERED_MODEL_NAME}@{CHAMPION_ALIAS}"
"""The one URI serving loads by default (MODEL_URI)."""
VALIDATION_PROBABILITIES = "validation_probabilities.json"
"""Artifact of a registered version's run: {"probability_malignant": [...]}, the version's outputs on
its validation images, the reference its production probabilities are compared with."""
DEFAULT_EXPERIMENT = "cnn_skin_cancer"
"""The seed pipeline's experiment name (MLFLOW_EXPERIMENT_NAME)."""


def version_uri(version: str) -> str:
    return f"models:/{REGISTERED_MODEL_NAME}/{version}"
