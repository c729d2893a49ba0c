"""The prediction log that serving writes, read back for the monitoring assets, and the drift
reports they store beside it (layout in skin_cancer_contract.monitoring)."""

import io
from dataclasses import dataclass, field

import dagster as dg

from resources.storage import ArtifactStore, StorageError
from skin_cancer_contract.monitoring import drift_report_key, from_json_lines, partition_prefix


@dataclass
class LogRecords:
    """The well-formed records read, and why each malformed line among them was skipped."""

    records: list[dict] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)

    def __add__(self, other: "LogRecords") -> "LogRecords":
        return LogRecords(self.records + other.records, self.malformed + other.malformed)


class ProductionLog(dg.ConfigurableResource):
    """Serving's prediction and feedback records in the project's storage, and the day's drift reports."""

    store: dg.ResourceDependency[ArtifactStore]

    def records(self, kind: str, day: str) -> LogRecords:
        """Every well-formed record of `kind` (predictions, feedback or drops) written on `day`
        (YYYY-MM-DD); each malformed line is skipped, logged as a warning and named in the result."""
        return sum((self._read(kind, key) for key in self.store.list_keys(partition_prefix(kind, day))), LogRecords())

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

    def _read(self, kind: str, key: str) -> LogRecords:
        sink = io.BytesIO()
        self.store.read_into(key, sink)
        read = LogRecords(*from_json_lines(sink.getvalue(), kind, self.store.uri(key)))
        for reason in read.malformed:
            dg.get_dagster_logger().warning(f"skipped a malformed log line: {reason}")
        return read
