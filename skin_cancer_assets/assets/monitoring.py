"""The monitoring group: what the served model did each day, read from serving's prediction log.

Daily partitions (UTC). The assets keep no value of their own: their figures are their metadata,
the records stay where serving wrote them. A schedule materializes yesterday's partition each
day; today's (so far) can be materialized from the UI.
"""

from datetime import date, timedelta

import dagster as dg
import numpy as np

from resources.production_log import ProductionLog
from skin_cancer_assets.jobs import MONITORING, RUN_KIND
from skin_cancer_assets.production import image_drift, performance, performance_table, prediction_summary, statistics_table
from skin_cancer_contract.monitoring import FEEDBACK, PREDICTIONS, channel_statistics

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1)
"""Every UTC day from the first that serving could log; `end_offset=1` offers today's partition too."""
FEEDBACK_WINDOW_DAYS = 30
"""Confirmations of a day's predictions are looked for on that day and the 30 after it."""


@dg.asset(group_name="monitoring", partitions_def=DAILY, kinds={"json"})
def production_predictions(context: dg.AssetExecutionContext, production_log: ProductionLog) -> dg.MaterializeResult:
    """The day's predictions: how many, by model version, and the share called malignant."""
    day = context.partition_key
    summary = prediction_summary(production_log.records(PREDICTIONS, day))
    return dg.MaterializeResult(
        metadata={
            "count": summary["count"],
            "by_model_version": dg.MetadataValue.json(summary["by_model_version"]),
            "malignant_rate": summary["malignant_rate"],
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
    recall and specificity per model version, with counts and 95 % intervals."""
    day = context.partition_key
    first = date.fromisoformat(day)
    window = [(first + timedelta(days=offset)).isoformat() for offset in range(FEEDBACK_WINDOW_DAYS + 1)]
    feedback = [record for d in window for record in production_log.records(FEEDBACK, d)]
    figures = performance(production_log.records(PREDICTIONS, day), feedback, config.min_confirmed)
    return dg.MaterializeResult(
        metadata={
            "confirmed": sum(entry["confirmed"] for entry in figures.values()),
            "min_confirmed": config.min_confirmed,
            "performance": dg.MetadataValue.json(figures),
            "table": dg.MetadataValue.md(performance_table(figures) if figures else f"no predictions on {day}"),
        }
    )


DRIFT_CHECK = "drift_within_bounds"


@dg.asset(
    group_name="monitoring",
    partitions_def=DAILY,
    deps=[production_predictions],
    kinds={"scipy"},
    check_specs=[dg.AssetCheckSpec(DRIFT_CHECK, asset="production_drift", description="The day's images look like the training images.")],
)
def production_drift(context: dg.AssetExecutionContext, production_log: ProductionLog, train_images: np.ndarray) -> dg.MaterializeResult:
    """Drift of the day's image statistics (per-channel mean and spread, as serving logs them)
    from those of the training images, with the figures that decided it."""
    drift = image_drift(statistics_table(*channel_statistics(train_images)), production_log.records(PREDICTIONS, context.partition_key))
    figures = {
        "samples": drift["samples"],
        "drifted_statistics": dg.MetadataValue.json(drift.get("drifted_statistics", [])),
        "tests": dg.MetadataValue.json(drift["tests"]),
    }
    if drift["drifted"] is None:
        description = f"no verdict: {drift['reason']}"
    elif drift["drifted"]:
        description = f"drifted: {', '.join(drift['drifted_statistics'])} (Kolmogorov-Smirnov p < {drift['p_value']})"
    else:
        description = f"no statistic drifted at p < {drift['p_value']}"
    check = dg.AssetCheckResult(
        check_name=DRIFT_CHECK,
        passed=not drift["drifted"],
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={**figures, "verdict": description},
    )
    return dg.MaterializeResult(metadata={**figures, "verdict": description}, check_results=[check])


monitor_production = dg.define_asset_job(
    "monitor_production",
    selection=dg.AssetSelection.groups("monitoring"),
    partitions_def=DAILY,
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
