"""What the monitoring assets read from the MLflow registry: the reference outputs of a served version.

A plain client, not the `mlflow` resource: that one opens an MLflow run for every Dagster run,
which a daily monitoring run has no use for.
"""

import json
import tempfile
from pathlib import Path

import dagster as dg
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException

from skin_cancer_contract.registry import REGISTERED_MODEL_NAME, VALIDATION_PROBABILITIES


class ModelRegistry(dg.ConfigurableResource):
    """The registered versions of the served model on the tracking server `tracking_uri`."""

    tracking_uri: str

    def validation_probabilities(self, version: str) -> list[float] | None:
        """The outputs of `version` on its validation images, as its training run logged them; None
        when that run logged none (a version registered by hand, or before they were logged)."""
        client = MlflowClient(self.tracking_uri)
        try:
            run_id = client.get_model_version(REGISTERED_MODEL_NAME, version).run_id
            if not run_id or VALIDATION_PROBABILITIES not in {artifact.path for artifact in client.list_artifacts(run_id)}:
                return None
            with tempfile.TemporaryDirectory() as folder:
                path = download_artifacts(run_id=run_id, artifact_path=VALIDATION_PROBABILITIES, dst_path=folder, tracking_uri=self.tracking_uri)
                return json.loads(Path(path).read_text())["probability_malignant"]
        except MlflowException as error:
            raise dg.Failure(
                f"MLflow tracking server {self.tracking_uri} (MLFLOW_TRACKING_URI) could not give the validation "
                f"probabilities of {REGISTERED_MODEL_NAME} version {version}: {error}"
            ) from error
