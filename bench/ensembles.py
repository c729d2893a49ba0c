"""Benchmark: what an ensemble of zoo models gains over its best member, and how to combine them.

    .venv/bin/python bench/ensembles.py [--models efficientnet_lite0,basic_cnn,resnet50] [--threads 2]
    .venv/bin/python bench/ensembles.py --models efficientnet_lite0,basic_cnn,efficientnet_lite0@image_size=160
    .venv/bin/python bench/ensembles.py --models "efficientnet_lite0,basic_cnn,basic_cnn@seed=7,basic_cnn@seed=11"

Trains each model once with its zoo defaults on the full training split (the assets' own
`training.train`); `MODEL@setting=value;...` trains a variant of a zoo model, a candidate
member that the zoo does not have yet. It then scores every combination of two or more of them on the shared
validation split, two ways: `training.combine` (the zoo's ensembles: the mean of the members'
log-odds) and the plain mean of their probabilities. Each threshold is set on validation as
the assets set it. Ensembles are chosen by validation ROC-AUC. Every row is compared with the
best single model (by validation ROC-AUC) on the same validation images: a paired stratified
bootstrap on ROC-AUC and McNemar's test on the correct calls, each at its own threshold. It prints
validation figures only; `--show-test` adds the test figures, for one final run per change of
recipe (docs/results.md). crossval_cnn cannot be a member (it already averages its folds' probabilities).
"""

import argparse
import itertools
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.arrays import split_arrays, train_rows  # noqa: E402
from skin_cancer_assets.environment import default_data_folder  # noqa: E402
from skin_cancer_contract.evaluation import evaluate, mcnemar, paired_bootstrap_roc_auc, threshold_for_recall  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="efficientnet_lite0,basic_cnn,resnet50")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="replace every model's epochs (a quick check of this script)")
    parser.add_argument("--data", default=str(default_data_folder()))
    parser.add_argument("--show-test", action="store_true", help="also print the test figures (one final run per change of recipe)")
    args = parser.parse_args()

    import keras

    from skin_cancer_assets import training
    from skin_cancer_assets.model_zoo import ZOO
    from skin_cancer_assets.training_config import config_class_for

    specs = {spec.name: spec for spec in ZOO}
    names = args.models.split(",")
    variants = {name: _variant(name) for name in names}  # name -> (zoo model, its setting overrides)
    unknown = [name for name, (model, _) in variants.items() if model not in specs or specs[model].members or specs[model].cross_validated]
    if unknown:
        raise SystemExit(f"{unknown} cannot be members; choose from {[s.name for s in ZOO if not (s.members or s.cross_validated)]}")
    training.limit_threads(args.threads)
    train_images, train_labels = split_arrays("train", args.data)
    test_images, test_labels = split_arrays("test", args.data) if args.show_test else (None, None)
    ensemble_spec = next(spec for spec in ZOO if spec.members)
    shared = config_class_for(ensemble_spec.name, ensemble_spec.defaults, ensemble=True)()  # the ensemble step's settings
    rows = train_rows(args.data)  # the validation_split asset's default split
    val_rows = rows[1]
    val_labels = train_labels[val_rows]

    models, probs = {}, {}
    for name in names:
        model, overrides = variants[name]
        spec = specs[model]
        config = config_class_for(model, {**spec.defaults, **overrides, **({"epochs": args.epochs} if args.epochs else {})})()
        print(f"training {name} ...", flush=True)
        started = time.monotonic()
        trained = training.train(spec, config, train_images, train_labels, rows, lambda *_: None)
        # A variant shares its zoo model's name; the combined model needs a distinct one per member.
        models[name] = keras.Model(trained.model.inputs, trained.model.outputs, name=re.sub(r"\W", "_", name))
        test_probs = training.predict(trained.model, test_images, config.batch_size) if args.show_test else None
        probs[name] = (trained.validation_probabilities, test_probs)
        print(f"  {(time.monotonic() - started) / 60:.1f} min, val ROC-AUC {trained.validation_metrics['roc_auc']:.3f}", flush=True)

    rows = []
    for name in names:
        rows.append((name, "single model", *probs[name]))
    for size in range(2, len(names) + 1):
        for members in itertools.combinations(names, size):
            combined = training.combine(ensemble_spec, shared, [models[m] for m in members], train_images[val_rows], val_labels)
            test = training.predict(combined.model, test_images, shared.batch_size) if args.show_test else None
            rows.append((" + ".join(members), "mean of log-odds", combined.validation_probabilities, test))
            mean_test = np.mean([probs[m][1] for m in members], axis=0) if args.show_test else None
            rows.append((" + ".join(members), "mean of probabilities", np.mean([probs[m][0] for m in members], axis=0), mean_test))

    print_table(rows, names, probs, val_labels, test_labels, shared, args.threads, args.show_test)


def print_table(rows: list, names: list[str], probs: dict, val_labels, test_labels, shared, threads: int, show_test: bool) -> None:
    """Validation figures of every row, its paired tests against the best single model, and the
    test figures when `show_test`."""
    best = max(names, key=lambda name: evaluate(val_labels, probs[name][0], 0.5)["roc_auc"])
    best_probs = probs[best][0]
    best_threshold = threshold_for_recall(val_labels, best_probs, shared.target_recall, shared.recall_confidence)
    print(
        f"\n{threads} thread(s); change: validation ROC-AUC against the best single model, {best} "
        f"({evaluate(val_labels, best_probs, 0.5)['roc_auc']:.3f}), paired on the {len(val_labels)} validation images"
    )
    test_head = " test ROC-AUC | test accuracy | test recall | test specificity |" if show_test else ""
    print(
        "| models | combined by | val ROC-AUC | change | bootstrap 95 % | p (bootstrap) | val accuracy | discordant (row/best right) | "
        f"p (McNemar) | val recall | val specificity |{test_head} threshold |"
    )
    print("|---|---|" + "---:|" * (10 + (4 if show_test else 0)))
    for label, how, val_probs, test_probs in rows:
        threshold = threshold_for_recall(val_labels, val_probs, shared.target_recall, shared.recall_confidence)
        val = evaluate(val_labels, val_probs, threshold)
        if label == best and how == "single model":
            paired = "| - | - | - |"
            mc = "| - | - |"
        else:
            boot = paired_bootstrap_roc_auc(val_labels, val_probs, best_probs)
            calls = mcnemar(val_labels, val_probs >= threshold, best_probs >= best_threshold)
            paired = f"| {boot['difference']:+.3f} | {boot['low']:+.3f} to {boot['high']:+.3f} | {boot['p_value']:.3f} |"
            mc = f"| {calls['a_only']}/{calls['b_only']} | {calls['p_value']:.3f} ({calls['method']}) |"
        test = ""
        if show_test:
            t = evaluate(test_labels, test_probs, threshold)
            test = f" {t['roc_auc']:.3f} | {t['accuracy']:.3f} | {t['recall_malignant']:.3f} | {t['specificity']:.3f} |"
        print(
            f"| {label} | {how} | {val['roc_auc']:.3f} {paired} {val['accuracy']:.3f} {mc} {val['recall_malignant']:.3f} | "
            f"{val['specificity']:.3f} |{test} {threshold:.3f} |"
        )


def _variant(name: str) -> tuple[str, dict]:
    """`MODEL@setting=value;...` as (MODEL, {setting: value}); the values are read as Python literals."""
    import ast

    model, _, settings = name.partition("@")
    overrides = {}
    for setting in filter(None, settings.split(";")):
        key, _, value = setting.partition("=")
        overrides[key] = ast.literal_eval(value)
    return model, overrides


if __name__ == "__main__":
    main()
