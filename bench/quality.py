"""Benchmark: the default graph on the full data set, against the quality targets of issue 14.

    .venv/bin/python bench/quality.py [--repeats 2] [--profile default]

Each repeat runs `python -m skin_cancer_assets.cli` (the `make run` path: the train_and_elect
job with its multiprocess executor) on a fresh Dagster instance and local MLflow store in
a temporary folder, and samples the memory of the whole process tree twice a second. The
figures come from the assets' materialization metadata, so they are the ones the Dagster
UI shows; the margin cost is the validation specificity a threshold gives up for its recall
margin (`recall_confidence`). A second table gives the test figures without the test images
that have a near-duplicate among the training images (`validation_split`'s check). With two or
more repeats the table also shows how far the same seed drifted.
"""

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

METRICS = ("roc_auc", "accuracy", "recall_malignant", "specificity")
TARGETS = {  # issue 14's promise: how a run is checked against it
    "champion ROC-AUC >= 0.96": lambda r: r["champion"]["roc_auc"] >= 0.96,
    "champion accuracy >= 0.90": lambda r: r["champion"]["accuracy"] >= 0.90,
    "champion recall >= 0.90 at its threshold": lambda r: r["champion"]["recall_malignant"] >= 0.90,
    "champion specificity >= 0.85 at its threshold": lambda r: r["champion"]["specificity"] >= 0.85,
    "stretch: champion accuracy >= 0.935 (the pretrained GPU reference)": lambda r: r["champion"]["accuracy"] >= 0.935,
    "whole graph <= 20 min": lambda r: r["wall_seconds"] <= 20 * 60,
    "peak memory of all processes <= 8 GB": lambda r: r["peak_bytes"] <= 8 * 1024**3,
}
DRIFT_TARGET = 0.01


class TreeMemory:
    """Peak of the summed RSS of a process and all its descendants, sampled in a thread.

    Summing RSS counts shared pages once per process, so the figure errs on the high side.
    """

    def __init__(self, pid: int, interval: float = 0.5):
        self.root, self.interval, self.peak = psutil.Process(pid), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            total = 0
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for process in processes:
                try:
                    total += process.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.peak = max(self.peak, total)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_graph(profile: str, root: Path) -> dict:
    """One `make run`-equivalent in `root`; returns wall time, peak memory and the assets' figures."""
    home = root / "dagster"
    home.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "SKIN_CANCER_PROFILE": profile,
        "SKIN_CANCER_STATE": str(root / "state"),
        "DAGSTER_HOME": str(home),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    env.pop("MLFLOW_TRACKING_URI", None)  # the embedded local store, as `make run` uses it
    env.pop("AWS_BUCKET", None)
    log = root / "run.log"
    started = time.monotonic()
    with log.open("w") as out:
        child = subprocess.Popen([sys.executable, "-m", "skin_cancer_assets.cli"], cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        with TreeMemory(child.pid) as memory:
            code = child.wait()
    wall = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"the graph failed (exit {code}); the end of its log:\n{log.read_text()[-3000:]}")
    return {"wall_seconds": wall, "peak_bytes": memory.peak, **asset_figures(home)}


def asset_figures(home: Path) -> dict:
    """Test metrics, threshold and training time of each model, from the latest materializations."""
    import dagster as dg

    from skin_cancer_assets.cli import latest_metadata
    from skin_cancer_assets.model_zoo import ZOO

    with dg.DagsterInstance.from_config(str(home)) as instance:
        models = {}
        for spec in ZOO:
            found = latest_metadata(instance, spec.name)
            models[spec.name] = {
                **{name: found[f"test_{name}"] for name in METRICS},
                "distinct": {name: found[f"distinct_test_{name}"] for name in METRICS},
                "distinct_images": found["distinct_test_images"],
                "operating_points": found["operating_points"],
                "roc_auc_interval": found["test_roc_auc_interval"],
                "threshold": found["threshold"],
                "margin_cost": found["margin_specificity_cost"],
                "training_seconds": found["training_seconds"],
                "epochs_run": found["epochs_run"],
            }
        champion_class = latest_metadata(instance, "champion_model")["champion_class"]
        near_duplicates = latest_metadata(instance, "validation_split")["test_images_with_a_near_duplicate_in_train"]
    return {"models": models, "champion_class": champion_class, "champion": models[champion_class], "near_duplicates": near_duplicates}


def print_report(runs: list[dict]) -> None:
    last = runs[-1]
    print("\n| model | ROC-AUC | accuracy | malignant recall | specificity | threshold | margin cost | training | epochs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, m in last["models"].items():
        label = f"{name} (champion)" if name == last["champion_class"] else name
        print(
            f"| {label} | {m['roc_auc']:.3f} | {m['accuracy']:.3f} | {m['recall_malignant']:.3f} | "
            f"{m['specificity']:.3f} | {m['threshold']:.3f} | {m['margin_cost']:.3f} | {m['training_seconds'] / 60:.1f} min | {m['epochs_run']} |"
        )
    champion = last["champion"]
    print(f"\nthe champion's two operating points, both chosen on validation (test ROC-AUC {champion['roc_auc']:.3f}, "
          f"95 % bootstrap interval {champion['roc_auc_interval']}; Wilson intervals):")
    print(champion["operating_points"])
    print(f"\nwithout the {last['near_duplicates']} test images that have a near-duplicate among the training images:")
    print("| model | test images | ROC-AUC | accuracy | malignant recall | specificity |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, m in last["models"].items():
        d = m["distinct"]
        print(f"| {name} | {m['distinct_images']} | {d['roc_auc']:.3f} | {d['accuracy']:.3f} | {d['recall_malignant']:.3f} | {d['specificity']:.3f} |")
    print(f"\nwhole graph: {last['wall_seconds'] / 60:.1f} min wall; peak memory of all processes {last['peak_bytes'] / 1024**3:.2f} GB")
    print("\n| target | met |")
    print("|---|---|")
    for target, test in TARGETS.items():
        print(f"| {target} | {'yes' if test(last) else 'NO'} |")
    if len(runs) > 1:
        drift = max(
            abs(a["models"][name][metric] - b["models"][name][metric])
            for a, b in itertools.pairwise(runs)
            for name in last["models"]
            for metric in METRICS
        )
        verdict = "yes" if drift <= DRIFT_TARGET else "NO"
        print(f"| same seed within {DRIFT_TARGET} over {len(runs)} runs (max drift {drift:.4f}) | {verdict} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--profile", default="default", help="smoke checks this script in a minute")
    args = parser.parse_args()
    runs = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="skin-cancer-quality-") as folder:
            print(f"run {repeat + 1}/{args.repeats}: profile {args.profile} in {folder} ...", flush=True)
            runs.append(run_graph(args.profile, Path(folder)))
            print(f"  {runs[-1]['wall_seconds'] / 60:.1f} min, champion {runs[-1]['champion_class']}", flush=True)
    print_report(runs)


if __name__ == "__main__":
    main()
