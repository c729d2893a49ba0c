"""Processes that open a fresh SQLite instance at the same moment (a daemon and a webserver started
together) race to create its schema, and some fail ("table alembic_version already exists"; four
at once fail almost every time). `make dev` (scripts/dev.sh) creates it first with its `dagster
instance migrate` line; run as the script runs it, that line leaves an instance that four processes
opening it at once all open. The other suites create it in-process (`create_instance_storage`)."""

import re
import shutil
import subprocess
import time

from tests.helpers import REPO, VENV_BIN

DEV_SH = REPO / "scripts" / "dev.sh"

OPEN_AT = """
import sys, time
import dagster as dg
while time.time() < float(sys.argv[2]):
    pass
with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    instance.get_runs_count()
"""


def dev_sh_migrate_statement() -> str:
    """scripts/dev.sh's `dagster instance migrate` statement (with its continuation line), checked to
    run before the daemon and the webserver start."""
    script = DEV_SH.read_text()
    statement = re.search(r"^[^#\n]*instance migrate[^\n]*\\\n[^\n]*$|^[^#\n]*instance migrate[^\n]*$", script, re.MULTILINE)
    assert statement, "scripts/dev.sh no longer runs `dagster instance migrate`"
    for service in ("start daemon", "start webserver"):
        assert statement.end() < script.index(service), f"scripts/dev.sh runs the migration after `{service}`"
    return statement.group()


def run_dev_sh_migrate(home, logs) -> None:
    """The statement as scripts/dev.sh runs it: under `set -euo pipefail`, from the repository, with its BIN and LOGS."""
    subprocess.run(
        ["bash", "-c", f"set -euo pipefail\nBIN={VENV_BIN}\nLOGS={logs}\n{dev_sh_migrate_statement()}"],
        cwd=REPO, env={"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(home)}, check=True, timeout=300,
    )


def test_four_processes_starting_together_open_the_instance_dev_sh_migrated(tmp_path):
    for attempt in range(3):
        home, logs = tmp_path / f"home-{attempt}", tmp_path / f"logs-{attempt}"
        home.mkdir()
        logs.mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        run_dev_sh_migrate(home, logs)
        assert list(home.rglob("*.db")), (logs / "instance-migrate.log").read_text()[-2000:]  # the schemas exist
        start = str(time.time() + 8)  # both have imported dagster by then
        processes = [
            subprocess.Popen([str(VENV_BIN / "python"), "-c", OPEN_AT, str(home), start], stderr=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        for process in processes:
            _, errors = process.communicate(timeout=120)
            assert process.returncode == 0, errors[-2000:]
