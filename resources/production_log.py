"""The prediction log that serving writes, read back for the monitoring assets (layout in skin_cancer_contract.monitoring)."""

import io

import dagster as dg

from resources.storage import ArtifactStore
from skin_cancer_contract.monitoring import from_json_lines, partition_prefix


class ProductionLog(dg.ConfigurableResource):
    """Serving's prediction and feedback records in the project's storage."""

    store: dg.ResourceDependency[ArtifactStore]

    def records(self, kind: str, day: str) -> list[dict]:
        """Every record of `kind` (predictions or feedback) written on `day` (YYYY-MM-DD)."""
        return [record for key in self.store.list_keys(partition_prefix(kind, day)) for record in self._read(key)]

    def where(self, kind: str, day: str) -> str:
        return self.store.uri(partition_prefix(kind, day))

    def _read(self, key: str) -> list[dict]:
        sink = io.BytesIO()
        self.store.read_into(key, sink)
        return from_json_lines(sink.getvalue(), self.store.uri(key))
