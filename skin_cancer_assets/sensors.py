"""Redeploy serving whenever a champion materializes."""

import dagster as dg

from skin_cancer_assets.jobs import deploy_champion


@dg.asset_sensor(
    asset_key=dg.AssetKey("champion_model"),
    job=deploy_champion,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=5,
)
def redeploy_on_new_champion(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    """One deploy per champion materialization: the sensor's cursor and the run key both ensure it."""
    metadata = asset_event.asset_materialization.metadata if asset_event.asset_materialization else {}
    version = metadata.get("champion_version")
    yield dg.RunRequest(
        run_key=f"champion-{asset_event.run_id}-{asset_event.timestamp}",
        tags={"champion_version": str(version.value) if version else "unknown"},
    )
