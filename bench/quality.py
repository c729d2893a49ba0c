"""Benchmark: the default graph on the full data set, against the quality targets of issue 14.

    .venv/bin/python bench/quality.py [--repeats 2] [--seeds 3] [--show-test] [--profile default]

Each repeat runs `python -m skin_cancer_assets.cli` (the `make run` path: the train_and_elect
job with its multiprocess executor) on a fresh Dagster instance and local MLflow store in
a temporary folder, and samples the memory of the whole process tree twice a second. The
figures come from the assets' materialization metadata, so they are the ones the Dagster
UI shows; the margin cost is the validation specificity a threshold gives up for its recall
margin (`recall_confidence`). A second table gives the test figures without the test images
that have a near-duplicate among the training images (`validation_split`'s check). With two or
more repeats the table also shows how far the same seed drifted.

`--seeds N` trains every model of the graph, the champion's recipe among them, N times with
different initialisation seeds (the zoo's own, then 7, 11, 15, ...: the `seed` setting of every
trained model; the validation split is `validation_split`'s and stays the same), and every figure
is printed as its mean and range (min-max) over the seeds. The graph is then run with that seed in
the run config, otherwise as `python -m skin_cancer_assets.cli` runs it. The bench prints the
validation figures only; `--show-test` adds the test figures and the targets checked on them,
which docs/results.md quotes from one final run per change of recipe.
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


SEEDED_RUN = """
import sys

import dagster as dg

from skin_cancer_assets import cli
from skin_cancer_assets.model_zoo import ZOO

config = {"ops": {spec.name: {"config": {"seed": int(sys.argv[1])}} for spec in ZOO if not spec.members}}
with dg.DagsterInstance.get() as instance:
    with dg.execute_job(dg.reconstructable(cli.train_and_elect_job), instance=instance, run_config=config) as result:
        sys.exit(0 if result.success else 1)
"""
"""`python -m skin_cancer_assets.cli` with every trained model's initialisation seed set in the run config."""


def seed_of(index: int) -> int | None:
    """The initialisation seed of the `index`-th run of `--seeds`: None (the zoo's own) first, then 7, 11, 15, ..."""
    return None if index == 0 else 7 + 4 * (index - 1)


def run_graph(profile: str, root: Path, seed: int | None = None) -> dict:
    """One `make run`-equivalent in `root`, with every trained model's `seed` replaced unless None;
    returns wall time, peak memory and the assets' figures."""
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
        command = ["-m", "skin_cancer_assets.cli"] if seed is None else ["-c", SEEDED_RUN, str(seed)]
        child = subprocess.Popen([sys.executable, *command], cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
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
                "val": {name: found[f"val_{name}"] for name in METRICS},
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


def spread(values: list[float], digits: int = 3) -> str:
    """One figure over the seeds: the value itself for one run, else its mean and range (min-max)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{sum(values) / len(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def print_report(runs: list[dict], seeded: list[dict], show_test: bool) -> None:
    """`runs`: the repeats at the zoo's seed (the drift check); `seeded`: one run per initialisation
    seed, whose figures are given as mean (min-max) when there are several."""
    last = seeded[-1]
    champions = [run["champion_class"] for run in seeded]
    seeds = ", ".join("the zoo's" if seed_of(i) is None else str(seed_of(i)) for i in range(len(seeded)))
    print(f"\n{len(seeded)} initialisation seed(s) ({seeds}), same validation split; champion per seed: {', '.join(champions)}")
    if len(seeded) > 1:
        print("each figure: mean (min-max) over the seeds")
    print("\n| model | val ROC-AUC | val accuracy | val malignant recall | val specificity | threshold | margin cost | training (min) | epochs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in last["models"]:
        label = f"{name} (champion)" if name == champions[0] else name
        ms = [run["models"][name] for run in seeded]
        cells = [spread([m["val"][metric] for m in ms]) for metric in METRICS]
        cells += [spread([m["threshold"] for m in ms]), spread([m["margin_cost"] for m in ms])]
        cells += [spread([m["training_seconds"] / 60 for m in ms], 1), spread([m["epochs_run"] for m in ms], 0)]
        print(f"| {label} | {' | '.join(cells)} |")
    if show_test:
        print("\n| model | test ROC-AUC | test accuracy | test malignant recall | test specificity |")
        print("|---|---:|---:|---:|---:|")
        for name in last["models"]:
            print(f"| {name} | {' | '.join(spread([run['models'][name][metric] for run in seeded]) for metric in METRICS)} |")
        champion = last["champion"]
        print(f"\nthe last run's champion's two operating points, both chosen on validation (test ROC-AUC {champion['roc_auc']:.3f}, "
              f"95 % bootstrap interval {champion['roc_auc_interval']}; Wilson intervals):")
        print(champion["operating_points"])
        print(f"\nwithout the {last['near_duplicates']} test images that have a near-duplicate among the training images:")
        print("| model | test images | ROC-AUC | accuracy | malignant recall | specificity |")
        print("|---|---:|---:|---:|---:|---:|")
        for name in last["models"]:
            distinct = [run["models"][name]["distinct"] for run in seeded]
            cells = " | ".join(spread([d[metric] for d in distinct]) for metric in METRICS)
            print(f"| {name} | {last['models'][name]['distinct_images']} | {cells} |")
    walls = [run["wall_seconds"] / 60 for run in seeded]
    peaks = [run["peak_bytes"] / 1024**3 for run in seeded]
    print(f"\nwhole graph: {spread(walls, 1)} min wall; peak memory of all processes {spread(peaks, 2)} GB")
    print("\n| target | met |")
    print("|---|---|")
    for target, test in TARGETS.items():
        if "champion" in target and not show_test:
            continue  # issue 14's figures are test figures: printed with --show-test only
        print(f"| {target} | {', '.join('yes' if test(run) else 'NO' for run in seeded)} |")
    if len(runs) > 1:
        splits = ("val", "test") if show_test else ("val",)
        drift = max(
            abs(_figure(a, name, metric, split) - _figure(b, name, metric, split))
            for a, b in itertools.pairwise(runs)
            for name in runs[-1]["models"]
            for metric in METRICS
            for split in splits
        )
        verdict = "yes" if drift <= DRIFT_TARGET else "NO"
        print(f"| same seed within {DRIFT_TARGET} over {len(runs)} runs (max drift {drift:.4f}, {' and '.join(splits)}) | {verdict} |")
    if not show_test:
        print("\n(the champion's targets are checked on the test figures: --show-test)")


def _figure(run: dict, model: str, metric: str, split: str) -> float:
    return run["models"][model]["val"][metric] if split == "val" else run["models"][model][metric]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="initialisation seeds: mean and range of every figure")
    parser.add_argument("--show-test", action="store_true", help="also print the test figures and the targets checked on them")
    parser.add_argument("--profile", default="default", help="smoke checks this script in a minute")
    args = parser.parse_args()
    plan = [None] * args.repeats + [seed_of(i) for i in range(1, args.seeds)]
    runs = []
    for index, seed in enumerate(plan):
        with tempfile.TemporaryDirectory(prefix="skin-cancer-quality-") as folder:
            which = "the zoo's seed" if seed is None else f"seed {seed}"
            print(f"run {index + 1}/{len(plan)}: profile {args.profile}, {which}, in {folder} ...", flush=True)
            runs.append(run_graph(args.profile, Path(folder), seed))
            print(f"  {runs[-1]['wall_seconds'] / 60:.1f} min, champion {runs[-1]['champion_class']}", flush=True)
    repeats = runs[: args.repeats]
    print_report(repeats, [repeats[-1], *runs[args.repeats :]], args.show_test)


if __name__ == "__main__":
    main()
