"""Benchmark: what an ensemble of zoo models gains over its best member, and how to combine them.

    .venv/bin/python bench/ensembles.py [--models efficientnet_lite0,basic_cnn,resnet50] [--threads 2]
    .venv/bin/python bench/ensembles.py --models efficientnet_lite0,basic_cnn,efficientnet_lite0@image_size=160
    .venv/bin/python bench/ensembles.py --models "efficientnet_lite0,basic_cnn,basic_cnn@seed=7,basic_cnn@seed=11"

Trains each model once with its zoo defaults on the full training split (the assets' own
`training.train`); `MODEL@setting=value;...` trains a variant of a zoo model, a candidate
member that the zoo does not have yet. It then scores every combination of two or more of them on the shared
validation split, two ways: `training.combine` (the zoo's ensembles: the mean of the members'
log-odds) and the plain mean of their probabilities. Each threshold is set on validation as
the assets set it. Ensembles are chosen by validation ROC-AUC; the test figures are for
docs/results.md. crossval_cnn cannot be a member (it already averages its folds' probabilities).
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
from skin_cancer_contract.evaluation import evaluate, threshold_for_recall  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="efficientnet_lite0,basic_cnn,resnet50")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="replace every model's epochs (a quick check of this script)")
    parser.add_argument("--data", default=str(default_data_folder()))
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
    test_images, test_labels = split_arrays("test", args.data)
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
        probs[name] = (trained.validation_probabilities, training.predict(trained.model, test_images, config.batch_size))
        print(f"  {(time.monotonic() - started) / 60:.1f} min, val ROC-AUC {trained.validation_metrics['roc_auc']:.3f}", flush=True)

    rows = []
    for name in names:
        rows.append((name, "single model", *probs[name]))
    for size in range(2, len(names) + 1):
        for members in itertools.combinations(names, size):
            combined = training.combine(ensemble_spec, shared, [models[m] for m in members], train_images[val_rows], val_labels)
            test = training.predict(combined.model, test_images, shared.batch_size)
            rows.append((" + ".join(members), "mean of log-odds", combined.validation_probabilities, test))
            rows.append((" + ".join(members), "mean of probabilities",
                         np.mean([probs[m][0] for m in members], axis=0), np.mean([probs[m][1] for m in members], axis=0)))

    best_single = max(evaluate(val_labels, probs[name][0], 0.5)["roc_auc"] for name in names)
    print(f"\n{args.threads} thread(s); change: validation ROC-AUC against the best single model ({best_single:.3f})")
    print("| models | combined by | val ROC-AUC | change | test ROC-AUC | test accuracy | recall | specificity | threshold |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, how, val_probs, test_probs in rows:
        threshold = threshold_for_recall(val_labels, val_probs, shared.target_recall, shared.recall_confidence)
        val, test = evaluate(val_labels, val_probs, threshold), evaluate(test_labels, test_probs, threshold)
        print(
            f"| {label} | {how} | {val['roc_auc']:.3f} | {val['roc_auc'] - best_single:+.3f} | {test['roc_auc']:.3f} | "
            f"{test['accuracy']:.3f} | {test['recall_malignant']:.3f} | {test['specificity']:.3f} | {threshold:.3f} |"
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
