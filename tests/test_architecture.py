"""The import boundaries that ARCHITECTURE.md states, checked on the source and on a real import."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = {"skin_cancer_contract", "resources", "skin_cancer_assets", "serving", "streamlit_app", "tests", "bench"}
ALLOWED = {
    "skin_cancer_contract": set(),
    "resources": {"skin_cancer_contract"},
    "skin_cancer_assets": {"resources", "skin_cancer_contract"},
    "serving": {"skin_cancer_contract"},
    "streamlit_app": {"skin_cancer_contract"},
}
FORBIDDEN_LIBRARIES = {
    "skin_cancer_contract": {"dagster", "tensorflow", "keras", "mlflow", "streamlit", "fastapi"},
    "serving": {"dagster", "streamlit"},
    "streamlit_app": {"dagster", "tensorflow", "keras", "mlflow"},
}


def imported_packages(package: str) -> dict[str, set[str]]:
    """Top-level package of every import (function-level ones too) -> the files that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_project_packages_it_may(package):
    imports = imported_packages(package)
    wrong = {name: files for name, files in imports.items() if name in PROJECT - {package} - ALLOWED[package]}
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])} of this project, but: {wrong}"


@pytest.mark.parametrize("package", sorted(FORBIDDEN_LIBRARIES))
def test_light_packages_stay_light(package):
    imports = imported_packages(package)
    wrong = {name: files for name, files in imports.items() if name in FORBIDDEN_LIBRARIES[package]}
    assert not wrong, f"{package} must not import {sorted(FORBIDDEN_LIBRARIES[package])}: {wrong}"


def test_importing_the_contract_loads_no_framework():
    modules = ", ".join(f"skin_cancer_contract.{p.stem}" for p in (REPO / "skin_cancer_contract").glob("[a-z]*.py"))
    code = (
        f"import sys, {modules}\n"
        "heavy = sorted({'dagster', 'tensorflow', 'keras', 'mlflow', 'sklearn'} & {m.split('.')[0] for m in sys.modules})\n"
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_architecture_page_names_every_package():
    page = (REPO / "ARCHITECTURE.md").read_text()
    for package in ALLOWED:
        assert f"`{package}/`" in page


ENVIRONMENT_READS_OUTSIDE = {
    "resources/deploy.py": {"KUBERNETES_SERVICE_HOST"},  # in a pod: the service account
    "skin_cancer_assets/upload_data.py": {"SKIN_CANCER_DATA"},  # a CLI of its own
}
"""The code location's environment reads outside skin_cancer_assets/environment.py (README, How it works)."""


def environment_reads(path: Path) -> set[str]:
    """Names read with os.environ.get / os.environ[...] / os.getenv; '?' for a name that is not a literal."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        key = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            target = ast.unparse(node.func)
            if target in ("os.environ.get", "os.getenv", "environ.get"):
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ", "environ"):
            key = node.slice
        if key is not None:
            names.add(key.value if isinstance(key, ast.Constant) else "?")
    return names


ENVIRONMENT_MODULES = {"skin_cancer_assets/environment.py", "skin_cancer_assets/pipeline_resources.py"}
"""The light readers (the deploy location imports them) and the training location's resources."""


def test_the_code_locations_read_the_environment_in_two_modules_but_for_the_documented_reads():
    found = {}
    for package in ("skin_cancer_assets", "resources"):
        for path in sorted((REPO / package).rglob("*.py")):
            relative = str(path.relative_to(REPO))
            reads = environment_reads(path)
            if reads and relative not in ENVIRONMENT_MODULES:
                found[relative] = reads
    assert found == ENVIRONMENT_READS_OUTSIDE, "a read the README and environment.py do not name, or one they name is gone"
