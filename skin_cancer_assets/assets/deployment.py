"""The serving group: every deploy of a champion, recorded in the lineage."""

from datetime import datetime, timezone

import dagster as dg

from resources.deploy import ServingTarget


@dg.asset(group_name="serving", kinds={"fastapi"})
def serving_deployment(context: dg.AssetExecutionContext, champion_model: dict, serving_target: ServingTarget) -> dg.Output[dict]:
    """What was deployed, where and when; succeeds only once serving reports the champion's version."""
    result = serving_target.deploy(champion_model["version"], context.log)
    record = {
        "name": champion_model["name"],
        "version": champion_model["version"],
        "model_class": champion_model["model_class"],
        "target": result["target"],
        "serving_url": result["serving_url"],
        "action": result["action"],
        "deployed_at": datetime.now(timezone.utc).isoformat(),
    }
    return dg.Output(
        record,
        metadata={
            "version": int(record["version"]),
            "model_class": record["model_class"],
            "target": record["target"],
            "serving": dg.MetadataValue.url(record["serving_url"]),
            "action": record["action"],
            "deployed_at": record["deployed_at"],
        },
    )
