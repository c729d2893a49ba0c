"""The prediction log that serving writes, read back for the monitoring assets, and the drift
reports they store beside it (layout in skin_cancer_contract.monitoring)."""

import io

import dagster as dg

from resources.storage import ArtifactStore, StorageError
from skin_cancer_contract.monitoring import drift_report_key, from_json_lines, partition_prefix


class ProductionLog(dg.ConfigurableResource):
    """Serving's prediction and feedback records in the project's storage, and the day's drift reports."""

    store: dg.ResourceDependency[ArtifactStore]

    def records(self, kind: str, day: str) -> list[dict]:
        """Every record of `kind` (predictions or feedback) written on `day` (YYYY-MM-DD)."""
        return [record for key in self.store.list_keys(partition_prefix(kind, day)) for record in self._read(key)]

    def where(self, kind: str, day: str) -> str:
        return self.store.uri(partition_prefix(kind, day))

    def store_drift_report(self, day: str, html: str) -> str:
        """Puts the drift report of `day` beside its records, whole or not at all; returns where.
        A write that fails raises a StorageError naming the target."""
        key = drift_report_key(day)
        try:
            self.store.put(key, io.BytesIO(html.encode()))
        except OSError as error:  # a local disk's refusal; S3's failures are StorageErrors that name the object already
            raise StorageError(f"writing the drift report {self.store.uri(key)} failed: {error}") from error
        return self.store.uri(key)

    def _read(self, key: str) -> list[dict]:
        sink = io.BytesIO()
        self.store.read_into(key, sink)
        return from_json_lines(sink.getvalue(), self.store.uri(key))
