"""Processes that open a fresh SQLite instance at the same moment (a daemon and a webserver started
together) race to create its schema, and some fail ("table alembic_version already exists"; four
at once fail almost every time). Created once first (`create_instance_storage`, as `make dev` does
with `dagster instance migrate`), they all open it."""

import shutil
import subprocess
import time

from tests.helpers import REPO, VENV_BIN, create_instance_storage

OPEN_AT = """
import sys, time
import dagster as dg
while time.time() < float(sys.argv[2]):
    pass
with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    instance.get_runs_count()
"""


def test_processes_starting_together_open_an_instance_created_first(tmp_path):
    for attempt in range(3):
        home = tmp_path / f"home-{attempt}"
        home.mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        create_instance_storage(home)
        start = str(time.time() + 8)  # both have imported dagster by then
        processes = [
            subprocess.Popen([str(VENV_BIN / "python"), "-c", OPEN_AT, str(home), start], stderr=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        for process in processes:
            _, errors = process.communicate(timeout=120)
            assert process.returncode == 0, errors[-2000:]
