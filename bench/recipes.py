"""Benchmark: what each training recipe gains or loses for one model class of the zoo.

    .venv/bin/python bench/recipes.py [--model basic_cnn] [--recipes augment,augment_no_cosine_decay,zoo] [--threads 2]

The defaults (`make bench-recipes`) are the recipes of basic_cnn's table in docs/results.md, under
the names its rows carry; the other tables there name their own `--model` and `--recipes`. A
recipe that changes a pretrained backbone's settings (frozen epochs, fine-tuning) is refused at
the start for a model without one, before anything trains. Every recipe is the model's zoo defaults with a few settings replaced, trained on the full
training split with `skin_cancer_assets.training.train` (the assets' own code: the
`validation_split` asset's held-out images, early stopping and threshold). Recipes are chosen by their
validation ROC-AUC. The table shows each recipe's change against the first one, run in the same
process, with a paired test on the same validation images: McNemar's on the correct calls at each
recipe's own threshold, a paired stratified bootstrap on ROC-AUC. It prints validation figures only;
`--show-test` adds the test figures, for one final run per change of recipe (docs/results.md).
"""

import argparse
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.arrays import split_arrays, train_rows  # noqa: E402
from skin_cancer_assets.environment import default_data_folder  # noqa: E402
from skin_cancer_contract.evaluation import evaluate, mcnemar, paired_bootstrap_roc_auc  # noqa: E402

RECIPES = {
    "zoo": {},
    "seed": {  # the seed pipeline's model_params, at this model's image size
        "epochs": 2, "batch_size": 64, "learning_rate": 1e-5, "augment": False, "class_weighting": False,
        "cosine_decay": False, "early_stopping_patience": 0,
    },
    "augment": {"augment": True},  # random flips, rotations, zoom, contrast and brightness
    "no_cosine_decay": {"cosine_decay": False},
    "augment_no_cosine_decay": {"augment": True, "cosine_decay": False},  # augmentation at a constant learning rate
    "no_class_weighting": {"class_weighting": False},
    "early_stopping": {"early_stopping_patience": 5},  # restores the best validation epoch
    "epochs_10": {"epochs": 10},
    "epochs_12": {"epochs": 12},  # for a pretrained backbone: 10 fine-tuning epochs after the frozen ones
    "epochs_20": {"epochs": 20},
    "fine_tune_from_block_8": {"fine_tune_from_block": 8},  # for a pretrained backbone: more blocks fine-tune
    "fine_tune_learning_rate_1e-3": {"fine_tune_learning_rate": 1e-3},  # for a pretrained backbone
    "adamw": {"optimizer": "adamw"},  # Adam with decoupled weight decay (Keras' default 0.004)
    "image_size_224": {"image_size": 224},  # the images' own size: nothing lost to resizing
    "image_size_288": {"image_size": 288},  # upsampled: finer feature maps for a pretrained backbone
    "image_size_96": {"image_size": 96},
    "image_size_48": {"image_size": 48},
}
DEFAULT_MODEL = "basic_cnn"
DEFAULT_RECIPES = ("augment", "augment_no_cosine_decay", "zoo")
"""basic_cnn's table in docs/results.md: augmentation (the zoo's default when it was measured), the
same at a constant learning rate, and the zoo's recipe now (no augmentation); changes against the first."""
BACKBONE_SETTINGS = frozenset({"frozen_epochs", "fine_tune_from_block", "fine_tune_learning_rate"})
"""Settings that only a model with a pretrained backbone applies (training refuses or ignores them otherwise)."""


def checked_recipes(spec, names: list[str]) -> dict[str, dict]:
    """Each named recipe's setting overrides for `spec`, or SystemExit naming every recipe that is unknown,
    does not apply to this model or makes an invalid config: checked before anything trains."""
    from skin_cancer_assets.training_config import config_class_for

    unknown = [name for name in names if name not in RECIPES]
    if unknown:
        raise SystemExit(f"unknown recipes {unknown}; choose from {list(RECIPES)}")
    if spec.block_of_layer is None:
        backbone_only = [name for name in names if BACKBONE_SETTINGS & set(RECIPES[name])]
        if backbone_only:
            raise SystemExit(
                f"{backbone_only} change a pretrained backbone's settings, which {spec.name} does not have; "
                f"its recipes: {[name for name in RECIPES if not BACKBONE_SETTINGS & set(RECIPES[name])]}"
            )
    for name in names:
        try:
            config_class_for(spec.name, {**spec.defaults, **RECIPES[name]})()
        except Exception as error:  # a setting the launchpad config does not have, or a value it refuses
            raise SystemExit(f"recipe {name!r} is not a valid config for {spec.name}: {error}") from error
    return {name: RECIPES[name] for name in names}


def run_recipe(spec, overrides: dict, arrays: dict) -> dict:
    import keras

    from skin_cancer_assets import training
    from skin_cancer_assets.training_config import config_class_for

    config = config_class_for(spec.name, {**spec.defaults, **overrides})()
    keras.backend.clear_session()
    started = time.monotonic()
    trained = training.train(spec, config, arrays["train_images"], arrays["train_labels"], arrays["train_rows"], lambda *_: None)
    seconds = time.monotonic() - started
    val_probs = trained.validation_probabilities
    val = evaluate(arrays["train_labels"][arrays["train_rows"][1]], val_probs, trained.threshold)
    test = None
    if "test_images" in arrays:
        test = evaluate(arrays["test_labels"], training.predict(trained.model, arrays["test_images"], config.batch_size), trained.threshold)
    return {
        "val_roc_auc": trained.validation_metrics["roc_auc"],
        "val": val,
        "val_probs": val_probs,
        "threshold": trained.threshold,
        "test": test,
        "seconds": seconds,
        "epochs_run": len(trained.history.get("loss", [])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument(
        "--recipes", default=",".join(DEFAULT_RECIPES), help=f"comma-separated, the first the baseline; from: {', '.join(RECIPES)}"
    )
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow threads (the graph gives each model 1)")
    parser.add_argument("--epochs", type=int, help="replace every recipe's epochs (a quick check of this script)")
    parser.add_argument("--data", default=str(default_data_folder()))
    parser.add_argument("--show-test", action="store_true", help="also print the test figures (one final run per change of recipe)")
    args = parser.parse_args()
    names = args.recipes.split(",")

    from skin_cancer_assets import training
    from skin_cancer_assets.model_zoo import ZOO

    specs = {spec.name: spec for spec in ZOO if not spec.members}  # an ensemble trains nothing: bench/ensembles.py
    if args.model not in specs:
        raise SystemExit(f"unknown model {args.model!r}; the zoo trains {list(specs)}")
    recipes = checked_recipes(specs[args.model], names)
    training.limit_threads(args.threads)
    arrays = {}
    for split in ("train", "test") if args.show_test else ("train",):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = split_arrays(split, args.data)
    arrays["train_rows"] = train_rows(args.data)

    results = {}
    for name in names:
        print(f"{args.model} / {name}: {recipes[name] or 'the zoo defaults'} ...", flush=True)
        overrides = {**recipes[name], **({"epochs": args.epochs} if args.epochs else {})}
        results[name] = run_recipe(specs[args.model], overrides, arrays)
        r = results[name]
        test = f", test ROC-AUC {r['test']['roc_auc']:.3f}" if r["test"] else ""
        print(f"  val ROC-AUC {r['val_roc_auc']:.3f}{test}, {r['seconds']:.0f} s", flush=True)

    val_labels = arrays["train_labels"][arrays["train_rows"][1]]
    print(f"\n{args.model}, {args.threads} thread(s); changes are against `{names[0]}`, paired on the {len(val_labels)} validation images")
    print_table(results, names[0], val_labels, args.show_test)


def print_table(results: dict, baseline: str, val_labels, show_test: bool) -> None:
    """Validation figures, each recipe's change against `baseline` with its paired tests, and the
    test figures when `show_test`."""
    base = results[baseline]
    test_head = " test ROC-AUC | test accuracy | test recall | test specificity |" if show_test else ""
    print(
        "| recipe | val ROC-AUC | change | bootstrap 95 % | p (bootstrap) | val accuracy | discordant (recipe/base right) | "
        f"p (McNemar) | val recall | val specificity |{test_head} epochs | time | x time |"
    )
    print("|---|" + "---:|" * (12 + (4 if show_test else 0)))
    for name, r in results.items():
        v = r["val"]
        if name == baseline:
            paired = "| - | - | - |"
            mc = "| - | - |"
        else:
            boot = paired_bootstrap_roc_auc(val_labels, r["val_probs"], base["val_probs"])
            calls = mcnemar(val_labels, r["val_probs"] >= r["threshold"], base["val_probs"] >= base["threshold"])
            paired = f"| {boot['difference']:+.3f} | {boot['low']:+.3f} to {boot['high']:+.3f} | {boot['p_value']:.3f} |"
            mc = f"| {calls['a_only']}/{calls['b_only']} | {calls['p_value']:.3f} ({calls['method']}) |"
        t = r["test"]
        test = f" {t['roc_auc']:.3f} | {t['accuracy']:.3f} | {t['recall_malignant']:.3f} | {t['specificity']:.3f} |" if show_test else ""
        print(
            f"| {name} | {v['roc_auc']:.3f} {paired} {v['accuracy']:.3f} {mc} {v['recall_malignant']:.3f} | {v['specificity']:.3f} |"
            f"{test} {r['epochs_run']} | {r['seconds'] / 60:.1f} min | {r['seconds'] / base['seconds']:.2f}x |"
        )


if __name__ == "__main__":
    main()
