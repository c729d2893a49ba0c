"""The app's dependency group, installed alone into a fresh environment, runs the app: no TensorFlow,
Dagster or MLflow needed (what streamlit_app/Dockerfile installs)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("tensorflow", "keras", "dagster", "mlflow")
RUN_THE_APP = f"""
import importlib.util, sys
from streamlit.testing.v1 import AppTest
app = AppTest.from_file("streamlit_app/app.py", default_timeout=60)
app.run()
assert not app.exception, [item.value for item in app.exception]
print("title:", app.title[0].value)
print("installed:", sorted(name for name in {HEAVY!r} if importlib.util.find_spec(name)))
print("imported:", sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r})))
"""

pytestmark = pytest.mark.slow


def test_the_app_group_alone_runs_the_app(tmp_path):
    uv = shutil.which("uv") or pytest.fail("uv is not on PATH (make install needs it too)")
    venv = tmp_path / "app-venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
    subprocess.run(
        [uv, "sync", "--locked", "--offline", "--no-default-groups", "--group", "app", "--no-install-project",
         "--python", sys.executable],
        cwd=REPO, env=env, check=True, capture_output=True, timeout=600,
    )
    ran = subprocess.run(
        [str(venv / "bin" / "python"), "-c", RUN_THE_APP],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "SERVING_URL": "http://127.0.0.1:9"},
        capture_output=True, text=True, timeout=300,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "title: Skin lesion classifier" in ran.stdout
    assert "installed: []" in ran.stdout and "imported: []" in ran.stdout, ran.stdout
