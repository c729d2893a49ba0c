"""The monitoring group: what the served model did each day, read from serving's prediction log.

Daily partitions (UTC). The assets keep no value of their own: their figures are their metadata,
the records stay where serving wrote them. A schedule materializes yesterday's partition each
day; today's (so far) can be materialized from the UI.
"""

from datetime import date, timedelta

import dagster as dg
import numpy as np

from resources.model_registry import ModelRegistry
from resources.production_log import LogRecords, ProductionLog
from skin_cancer_assets.runs import MONITORING, RUN_KIND
from skin_cancer_assets.production import DRIFT_P_VALUE, drift, performance, performance_table, prediction_summary
from skin_cancer_contract.monitoring import DROPS, FEEDBACK, PREDICTIONS

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1)
"""Every UTC day from the first that serving could log; `end_offset=1` offers today's partition too."""
FEEDBACK_WINDOW_DAYS = 30
"""Confirmations of a day's predictions are looked for on that day and the 30 after it."""


@dg.asset(group_name="monitoring", partitions_def=DAILY, kinds={"json"})
def production_predictions(context: dg.AssetExecutionContext, production_log: ProductionLog) -> dg.MaterializeResult:
    """The day's predictions: how many, by model version, the share called malignant, serving's
    latency (p50, p95: from the route's start to the answer), the records serving dropped and the
    log lines that could not be read."""
    day = context.partition_key
    predictions, drops = production_log.records(PREDICTIONS, day), production_log.records(DROPS, day)
    summary = prediction_summary(predictions.records, drops.records)
    return dg.MaterializeResult(
        metadata={
            **malformed_metadata(predictions + drops),
            "count": summary["count"],
            "by_model_version": dg.MetadataValue.json(summary["by_model_version"]),
            "malignant_rate": summary["malignant_rate"],
            "latency_p50_ms": summary["latency_p50_ms"],
            "latency_p95_ms": summary["latency_p95_ms"],
            "dropped_records": summary["dropped_records"],
            "dropped_by_reason": dg.MetadataValue.json(summary["dropped_by_reason"]),
            "records": dg.MetadataValue.path(production_log.where(PREDICTIONS, day)),
        }
    )


class PerformanceConfig(dg.Config):
    min_confirmed: int = 30
    """Figures of a model version are shown only from this many confirmed diagnoses."""


@dg.asset(group_name="monitoring", partitions_def=DAILY, deps=[production_predictions], kinds={"json"})
def production_performance(
    context: dg.AssetExecutionContext, config: PerformanceConfig, production_log: ProductionLog
) -> dg.MaterializeResult:
    """The day's predictions against the diagnoses dermatologists confirmed: accuracy, malignant
    recall and specificity per model version, with counts and 95 % intervals, and how many
    predictions got confirmations that disagree (conflicts, left out of the figures)."""
    day = context.partition_key
    first = date.fromisoformat(day)
    window = [(first + timedelta(days=offset)).isoformat() for offset in range(FEEDBACK_WINDOW_DAYS + 1)]
    feedback = sum((production_log.records(FEEDBACK, d) for d in window), LogRecords())
    predictions = production_log.records(PREDICTIONS, day)
    figures = performance(predictions.records, feedback.records, config.min_confirmed)
    return dg.MaterializeResult(
        metadata={
            **malformed_metadata(predictions + feedback),
            "confirmed": sum(entry["confirmed"] for entry in figures.values()),
            "confirmations": sum(entry["confirmations"] for entry in figures.values()),
            "conflicts": sum(entry["conflicts"] for entry in figures.values()),
            "min_confirmed": config.min_confirmed,
            "performance": dg.MetadataValue.json(figures),
            "table": dg.MetadataValue.md(performance_table(figures) if figures else f"no predictions on {day}"),
        }
    )


DRIFT_CHECK = "drift_within_bounds"
MALFORMED_EXAMPLES = 10
"""Malformed lines named in the metadata; the run's log warns about each."""


@dg.asset(
    group_name="monitoring",
    partitions_def=DAILY,
    deps=[production_predictions],
    kinds={"evidently"},
    check_specs=[
        dg.AssetCheckSpec(
            DRIFT_CHECK, asset="production_drift",
            description="The day's images look like the training images, and each served version's probabilities like its validation "
            "outputs; a day with too few predictions to tell (none: \"no data\") warns rather than passes.",
        )
    ],
)
def production_drift(
    context: dg.AssetExecutionContext,
    production_log: ProductionLog,
    model_registry: ModelRegistry,
    train_image_statistics: np.ndarray,
) -> dg.MaterializeResult:
    """Drift of the day's image statistics (per-channel mean and spread, as serving logs them)
    from those of the training images, and of each served version's probabilities from its
    outputs on its validation images, decided by one Evidently report: its verdicts and p-values
    are the metadata, and its HTML is stored beside the day's records (`report`)."""
    day = context.partition_key
    predictions = production_log.records(PREDICTIONS, day)
    found = drift(train_image_statistics, model_registry.validation_probabilities, predictions.records)
    images, probabilities = found.images, found.probabilities
    figures = {
        **malformed_metadata(predictions),
        "samples": images["samples"],
        "drifted_statistics": dg.MetadataValue.json(images.get("drifted_statistics", [])),
        "tests": dg.MetadataValue.json(images["tests"]),
        "drifted_versions": dg.MetadataValue.json(sorted(v for v, entry in probabilities.items() if entry["drifted"])),
        "probability_tests": dg.MetadataValue.json(probabilities),
    }
    if found.report_html is not None:
        figures["report"] = dg.MetadataValue.path(production_log.store_drift_report(day, found.report_html))
    verdict = drift_verdict(day, images, probabilities)
    check = dg.AssetCheckResult(
        check_name=DRIFT_CHECK,
        # No verdict on the images means too few predictions to tell: a warning, never a pass.
        passed=images["drifted"] is False and not any(entry["drifted"] for entry in probabilities.values()),
        severity=dg.AssetCheckSeverity.WARN,
        description=verdict,
        metadata={**figures, "verdict": verdict},
    )
    return dg.MaterializeResult(metadata={**figures, "verdict": verdict}, check_results=[check])


def malformed_metadata(read: LogRecords) -> dict:
    """How many log lines were skipped as malformed, and why (the first few, naming file and line)."""
    return {"malformed_lines": len(read.malformed), "malformed_examples": dg.MetadataValue.json(read.malformed[:MALFORMED_EXAMPLES])}


def drift_verdict(day: str, images: dict, probabilities: dict[str, dict]) -> str:
    """One line per test family: what drifted, or why there is no verdict ("no data" on a day without predictions)."""
    if images["samples"] == 0:
        lines = [f"no data: no predictions on {day}"]
    elif images["drifted"] is None:
        lines = [f"images: no verdict: {images['reason']}"]
    elif images["drifted"]:
        lines = [f"images drifted: {', '.join(images['drifted_statistics'])} (Kolmogorov-Smirnov p <= {DRIFT_P_VALUE})"]
    else:
        lines = [f"images: no statistic drifted at p <= {DRIFT_P_VALUE}"]
    for version, entry in probabilities.items():
        if entry["drifted"] is None:
            lines.append(f"probabilities of version {version}: no verdict: {entry['reason']}")
        else:
            shift = f"median {entry['reference_median']:.3f} on validation, {entry['production_median']:.3f} served; p = {entry['p_value']:.3g}"
            lines.append(f"probabilities of version {version} {'drifted' if entry['drifted'] else 'did not drift'} ({shift})")
    return "\n".join(lines)


monitor_production = dg.define_asset_job(
    "monitor_production",
    selection=dg.AssetSelection.groups("monitoring"),
    description="The day's production predictions and, where enough diagnoses were confirmed, how right they were.",
    tags={RUN_KIND: MONITORING},
)



@dg.schedule(
    job=monitor_production, cron_schedule="30 0 * * *", execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING
)
def monitor_yesterday(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Each day at 00:30 UTC, the day that just ended (the partitions' last one is today's, still filling)."""
    yesterday = (context.scheduled_execution_time.date() - timedelta(days=1)).isoformat()
    return dg.RunRequest(run_key=yesterday, partition_key=yesterday)
