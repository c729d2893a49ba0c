"""Benchmark: a new champion's way to serving, from its materialization to every request answered
by the new version, with 8 clients posting real images throughout (target: <= 8 s, 0 failed).

    .venv/bin/python bench/redeploy.py [--redeploys 3]

Real processes only: a throwaway `mlflow server`, the smoke graph materialized in-process for
a real champion, serving (uvicorn) loading the alias, and a Dagster webserver and daemon on a
fresh instance with the repository's dagster.yaml and workspace (both sensors on). Each
redeploy registers the champion's model again as a new version and records what an election
that promotes it records (the alias moved, a champion materialization with decision
`promoted`), then splits the time:

  sensor pick-up   materialization -> deploy run created by the asset sensor
  queue            run created -> launched by the daemon's run queue
  run start        launched -> run process started (it loads the code location)
  step start       run process started -> serving_deployment step started (executor)
  roll-out         step started -> serving asked to reload (registry read, POST /admin/reload)
  model load       reload asked -> new model loaded in serving
  swap             model loaded -> every request answered by the new version
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ["SKIN_CANCER_PROFILE"] = "smoke"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dagster as dg  # noqa: E402
import httpx  # noqa: E402

from tests.helpers import start_mlflow_server  # noqa: E402
from tests.skin_cancer_assets.pipeline import champion_version, train_smoke_champion  # noqa: E402
from tests.skin_cancer_assets.redeploy_support import (  # noqa: E402
    ASSET_SENSOR,
    Platform,
    PostingClients,
    bring_up,
    deploy_runs,
    promote,
    register_copy,
    wait_for,
    wait_for_run,
)

PHASES = ["sensor pick-up", "queue", "run start", "step start", "roll-out", "model load", "swap"]
TARGET_SECONDS = 8.0


def event_time(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType, step: str | None = None) -> float:
    events = [e for e in instance.all_logs(run_id, of_type=event_type) if step is None or e.step_key == step]
    return events[0].timestamp


def redeploy(platform: Platform) -> dict:
    """One promotion under 8 posting clients; the phases in seconds, the total and the failures."""
    instance, client, serving = platform.instance, platform.client, platform.serving
    before = {run.run_id for run in deploy_runs(instance)}
    version = register_copy(client, champion_version(client))
    with PostingClients(serving.url, count=8) as clients:
        time.sleep(2)  # traffic before the promotion
        materialized = promote(instance, client, version)
        swapped = wait_for(lambda: clients.every_answer_since(version), f"every request answered by v{version}", 300)
        time.sleep(1)
    (run,) = [run for run in deploy_runs(instance, ASSET_SENSOR) if run.run_id not in before]
    wait_for_run(instance, run.run_id, 300)
    model = httpx.get(f"{serving.url}/model", timeout=10).json()
    asked = datetime.fromisoformat(model["reload"]["requested_at"]).timestamp()
    loaded = datetime.fromisoformat(model["loaded_at"]).timestamp()
    created = instance.get_run_record_by_id(run.run_id).create_timestamp.timestamp()
    launched = event_time(instance, run.run_id, dg.DagsterEventType.RUN_STARTING)
    started = event_time(instance, run.run_id, dg.DagsterEventType.RUN_START)
    step = event_time(instance, run.run_id, dg.DagsterEventType.STEP_START, "serving_deployment")
    marks = [materialized, created, launched, started, step, asked, loaded, swapped]
    return {
        "version": version,
        "phases": dict(zip(PHASES, (later - earlier for earlier, later in zip(marks, marks[1:])))),
        "total": swapped - materialized,
        "requests": len(clients.all_answers),
        "failed": len(clients.failed),
    }


def print_table(results: list[dict]) -> None:
    header = f"{'redeploy':<10}" + "".join(f"{phase:>15}" for phase in PHASES) + f"{'total':>9}{'requests':>10}{'failed':>8}"
    print(header)
    for number, result in enumerate(results, 1):
        phases = "".join(f"{result['phases'][phase]:>14.1f}s" for phase in PHASES)
        print(f"{f'#{number} v' + result['version']:<10}{phases}{result['total']:>8.1f}s{result['requests']:>10}{result['failed']:>8}")
    median = {phase: statistics.median(r["phases"][phase] for r in results) for phase in PHASES}
    total = statistics.median(r["total"] for r in results)
    print(f"{'median':<10}" + "".join(f"{median[phase]:>14.1f}s" for phase in PHASES) + f"{total:>8.1f}s")
    failed = sum(r["failed"] for r in results)
    print(f"  materialization -> every request on the new version: median {total:.1f}s (target <= {TARGET_SECONDS:.0f}s) "
          f"{'PASS' if total <= TARGET_SECONDS else 'MISS'}")
    print(f"  failed requests: {failed} of {sum(r['requests'] for r in results)} (target 0) {'PASS' if not failed else 'MISS'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redeploys", type=int, default=3)
    args = parser.parse_args()
    began = time.monotonic()
    print(f"load average at start: {' '.join(f'{load:.2f}' for load in os.getloadavg())} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-redeploy-") as folder:
        root = Path(folder)
        (root / "mlflow").mkdir()
        mlflow_server, tracking_uri = start_mlflow_server(root / "mlflow")
        try:
            training = time.monotonic()
            train_smoke_champion(root / "smoke", tracking_uri)
            print(f"smoke champion trained and elected in {time.monotonic() - training:.0f}s")
            with bring_up(root, tracking_uri) as platform:
                results = [redeploy(platform) for _ in range(args.redeploys)]
        finally:
            mlflow_server.stop()
    print(f"load average at end: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    print_table(results)
    print(f"wall time: {time.monotonic() - began:.0f}s in all (mlflow server, smoke champion, platform, {args.redeploys} redeploys)")


if __name__ == "__main__":
    main()
