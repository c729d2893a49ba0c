"""Loading one model version together with what serving reports about it.

A `models:/NAME@ALIAS` URI is resolved to a concrete version first, so the loaded weights
and the reported version cannot disagree when the alias moves during a load.
"""

import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pydantic import ConfigDict, Field

from serving.schemas import ModelCard
from skin_cancer_contract.registry import REGISTERED_MODEL_NAME

DEFAULT_THRESHOLD = 0.5
_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")

log = logging.getLogger(__name__)


class ModelContractError(ValueError):
    """The loaded model does not take (N, S, S, 3) images or does not return (N, 1) probabilities.

    Its message is serving's own words about the model, without URIs: clients may read it.
    """


def load_failure_reason(error: Exception) -> str:
    """What a client may read about a failed load: the kind of failure, never the exception's
    text, which can hold registry and storage addresses or paths (the log has it)."""
    if isinstance(error, ModelContractError):
        return f"the model does not fit serving: {error}"
    if getattr(error, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":  # MLflow's code for it
        return "the registry has no such model, version or alias (yet)"
    return f"{type(error).__name__} (details in the server log)"


class _Version(NamedTuple):
    """What the registry (or a model folder) says about one version."""

    name: str
    version: str
    tags: dict
    run_id: str | None
    description: str | None = None


class LoadedModel(ModelCard):
    """A model card with the network that answers; `model_dump()` leaves the network out."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, protected_namespaces=())
    network: Any = Field(exclude=True, repr=False)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probability of malignant for each uint8 image of a (N, S, S, 3) batch; blocking."""
        return np.asarray(self.network.predict_on_batch(images), dtype=np.float64).reshape(len(images))


def load_model(model_uri: str) -> LoadedModel:
    """Load `model_uri` (registry URI or MLflow model folder/URI), check it and warm it up."""
    import mlflow  # imported here: TensorFlow and MLflow take seconds to import

    match = _REGISTRY_URI.match(model_uri)
    if match:
        found = _resolve_version(match["name"], match["alias"], match["version"])
        source_uri = f"models:/{found.name}/{found.version}"
    else:
        found = _describe_folder(model_uri)
        local = Path(model_uri)
        source_uri = str(local.resolve()) if local.exists() else model_uri  # a link's target: what was loaded
    network = mlflow.keras.load_model(source_uri)
    image_size = _check_and_warm_up(network)
    threshold = _number_tag(found.tags, "threshold")
    return LoadedModel(
        network=network,
        name=found.name,
        version=found.version,
        model_class=found.tags.get("model_class"),
        run_id=found.run_id,
        metrics=_test_metrics(found.run_id),
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
        accuracy_threshold=_number_tag(found.tags, "accuracy_threshold"),
        description=found.description or None,
        image_size=image_size,
        model_uri=model_uri,
        source_uri=source_uri,
        loaded_at=datetime.now(timezone.utc),
    )


def _resolve_version(name: str, alias: str | None, version: str | None) -> _Version:
    from mlflow import MlflowClient

    client = MlflowClient()
    found = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    return _Version(name, str(found.version), dict(found.tags), found.run_id, found.description)


def _describe_folder(model_uri: str) -> _Version:
    """Name, version, tags and run of a model folder.

    A folder downloaded from the registry names its version in `registered_model_meta`; the
    registry then supplies the version's tags (thresholds, model class) and description.
    Otherwise the MLmodel file's metadata is all there is.
    """
    import mlflow
    import yaml
    from mlflow.exceptions import MlflowException

    meta = mlflow.models.Model.load(model_uri)
    folder_tags = {str(k): str(v) for k, v in (meta.metadata or {}).items()}
    registered = Path(model_uri) / "registered_model_meta"
    if registered.is_file():
        names = yaml.safe_load(registered.read_text())
        try:
            return _resolve_version(names["model_name"], None, str(names["model_version"]))
        except MlflowException as error:
            log.warning("%s: registry lookup failed (%s); using the folder's own metadata", model_uri, error)
            return _Version(names["model_name"], str(names["model_version"]), folder_tags, meta.run_id)
    return _Version(folder_tags.get("name", REGISTERED_MODEL_NAME), folder_tags.get("version", "local"), folder_tags, meta.run_id)


def _check_and_warm_up(network) -> int:
    """Return the input side; one and two-image calls trace the predict function before traffic."""
    shape = tuple(network.input_shape)
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3 or not shape[1]:
        raise ModelContractError(f"expected input shape (N, S, S, 3), got {shape}")
    size = int(shape[1])
    for count in (1, 2):
        out = np.asarray(network.predict_on_batch(np.zeros((count, size, size, 3), np.uint8)))
        if out.shape != (count, 1):
            raise ModelContractError(f"expected output shape ({count}, 1), got {out.shape}")
        if not are_probabilities(out):
            raise ModelContractError(f"its outputs are not finite probabilities in [0, 1]: {out.ravel().tolist()}")
    return size


def are_probabilities(values: np.ndarray) -> bool:
    """Every value finite and within [0, 1] (NaN fails every comparison): what may be given a label."""
    return bool((np.isfinite(values) & (values >= 0) & (values <= 1)).all())


def _number_tag(tags: dict, tag: str) -> float | None:
    """The number in `tag`, None without the tag; one that is not a number refuses the version."""
    raw = tags.get(tag)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ModelContractError(f"tag {tag}={raw!r} is not a number") from None


def _test_metrics(run_id: str | None) -> dict[str, float]:
    """The run's test_* metrics; a model folder copied away from its tracking server has none."""
    if not run_id:
        return {}
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        metrics = MlflowClient().get_run(run_id).data.metrics
    except MlflowException as error:
        log.warning("no metrics for run %s: %s", run_id, error)
        return {}
    return {key: value for key, value in sorted(metrics.items()) if key.startswith("test_")}
