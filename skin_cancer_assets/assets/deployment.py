"""The serving group: every deploy of a champion, recorded in the lineage."""

from datetime import datetime, timezone

import dagster as dg

from resources.deploy import ServingTarget

DEPLOY_RETRIES = dg.RetryPolicy(max_retries=5, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
"""A failed deploy (serving restarting, a registry hiccup) is tried again 2, 6, 14, 30 and 62 s
later (give or take 2 s); after that the convergence sensor takes over."""


@dg.asset(group_name="serving", kinds={"fastapi"}, deps=["champion_model"], retry_policy=DEPLOY_RETRIES)
def serving_deployment(context: dg.AssetExecutionContext, serving_target: ServingTarget) -> dg.Output[dict]:
    """What was deployed, where and when. Deploys the version the `champion` alias names when the
    step runs (not one recorded earlier), and succeeds once serving reports the alias's version (every
    process behind the URL for `local` and `docker`; on Kubernetes, the Service after the rollout)."""
    result = serving_target.deploy(context.log)
    served = result["served"]
    record = {
        "name": served.get("name"),
        "version": served["version"],
        "requested_version": result["requested_version"],
        "model_class": served.get("model_class"),
        "target": result["target"],
        "serving_url": result["serving_url"],
        "action": result["action"],
        "deployed_at": datetime.now(timezone.utc).isoformat(),
    }
    return dg.Output(
        record,
        metadata={
            "version": int(record["version"]),
            "requested_version": int(record["requested_version"]),
            "model_class": record["model_class"] or "unknown",
            "target": record["target"],
            "serving": dg.MetadataValue.url(record["serving_url"]),
            "action": record["action"],
            "deployed_at": record["deployed_at"],
        },
    )
