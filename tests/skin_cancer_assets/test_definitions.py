"""The two code locations load and together draw the lineage of ARCHITECTURE.md."""

import subprocess
import sys

import dagster as dg

from skin_cancer_assets.assets.champion import ELECTION_POOL
from skin_cancer_assets import deploy_location
from skin_cancer_assets.definitions import build_defs, defs
from skin_cancer_assets.runs import DEPLOY, ELECTION, MONITORING, RUN_KIND
from skin_cancer_assets.model_zoo import ZOO
from skin_cancer_assets.profiles import PROFILES
from skin_cancer_assets.training_config import TrainingConfig

ARRAYS = {"train_images", "train_labels", "test_images", "test_labels"}
IMAGE_IDS = {"train_image_ids", "test_image_ids"}
DERIVED = {"train_image_statistics", "perceptual_hashes"}
"""Made in the same step as the arrays."""
MODELS = {spec.name for spec in ZOO}
ENSEMBLES = {spec.name: spec.members for spec in ZOO if spec.members}
CANDIDATES = {f"{name}_candidate" for name in MODELS}


def _graph():
    """The lineage as the workspace draws it: both locations' assets."""
    return dg.Definitions.merge(defs, deploy_location.defs).resolve_asset_graph()


def _parents(name: str) -> set[str]:
    return {key.to_user_string() for key in _graph().get(dg.AssetKey(name)).parent_keys}


def test_every_asset_of_the_lineage_exists_in_its_group():
    graph = _graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == {
        "raw_images": "data",
        **{name: "data" for name in ARRAYS | IMAGE_IDS | DERIVED | {"validation_split"}},
        **{name: "training" for name in MODELS | CANDIDATES},
        "champion_model": "selection",
        "serving_deployment": "serving",
        "production_predictions": "monitoring",
        "production_performance": "monitoring",
        "production_drift": "monitoring",
    }
    assert MODELS == {"basic_cnn", "resnet50", "crossval_cnn", "efficientnet_lite0", "ensemble"}


def test_lineage_runs_from_raw_images_to_serving():
    for name in ARRAYS | IMAGE_IDS | DERIVED:
        assert _parents(name) == {"raw_images"}
    assert _parents("validation_split") == {"raw_images", "train_image_ids", "train_labels", "test_image_ids", "perceptual_hashes"}
    for name in MODELS | CANDIDATES:  # each network and its record come from one training step
        members = ENSEMBLES.get(name.removesuffix("_candidate"), ())  # an ensemble's step combines its members'
        expected = ARRAYS | IMAGE_IDS | {"validation_split"} | {*members, *(f"{m}_candidate" for m in members)}
        assert _parents(name) == expected
    assert ENSEMBLES == {"ensemble": ("efficientnet_lite0", "basic_cnn")}
    assert _parents("champion_model") == CANDIDATES | {"train_images", "train_labels", "train_image_ids", "validation_split"}
    assert _parents("serving_deployment") == {"champion_model"}
    assert _parents("production_drift") == {"production_predictions", "train_image_statistics"}  # not the images


def test_the_redeploy_sensor_is_wired_to_the_champion_and_the_deploy_job():
    sensor = deploy_location.defs.resolve_sensor_def("redeploy_on_new_champion")
    assert sensor.asset_key == dg.AssetKey("champion_model")
    assert sensor.job_name == "deploy_champion"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    deploy = deploy_location.defs.resolve_job_def("deploy_champion")
    assert {key.to_user_string() for key in deploy.asset_layer.selected_asset_keys} == {"serving_deployment"}


HEAVY_MODULES = ("tensorflow", "keras", "mlflow", "dagster_mlflow", "boto3", "evidently", "skin_cancer_assets.training")


def test_the_deploy_location_imports_no_training_code_mlflow_or_tensorflow():
    """What a deploy run's process imports: the location module, in a fresh interpreter."""
    probe = f"import sys, skin_cancer_assets.deploy_location; print([m for m in {HEAVY_MODULES!r} if m in sys.modules])"
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert imported == "[]"


def test_the_training_location_defines_no_deploy():
    assert {job.name for job in defs.resolve_all_job_defs()} >= {"train_and_elect", "monitor_production"}
    assert "deploy_champion" not in {job.name for job in defs.resolve_all_job_defs()}
    assert {sensor.name for sensor in defs.sensors} == {"retrain_on_new_data"}
    assert not defs.resolve_asset_graph().has(dg.AssetKey("serving_deployment"))


def test_training_job_covers_everything_but_the_deploy():
    job = defs.resolve_job_def("train_and_elect")
    selected = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
    assert selected == {"raw_images", *ARRAYS, *IMAGE_IDS, *DERIVED, "validation_split", *MODELS, *CANDIDATES, "champion_model"}


def test_each_job_tags_its_runs_with_the_kind_the_run_queue_limits():
    assert defs.resolve_job_def("train_and_elect").tags[RUN_KIND] == ELECTION
    assert deploy_location.defs.resolve_job_def("deploy_champion").tags[RUN_KIND] == DEPLOY
    assert defs.resolve_job_def("monitor_production").tags[RUN_KIND] == MONITORING


def test_the_election_step_is_in_the_election_pool():
    assert defs.resolve_assets_def("champion_model").op.pool == ELECTION_POOL


def test_asset_checks_guard_data_and_champion():
    checks = {(key.asset_key.to_user_string(), key.name) for key in _graph().asset_check_keys}
    assert checks == {
        ("raw_images", "no_train_test_leak"),
        ("raw_images", "enough_images_per_class"),
        ("raw_images", "few_rejected_files"),
        ("raw_images", "no_sudden_shrinkage"),
        ("validation_split", "no_near_duplicates_across_splits"),
        ("train_images", "arrays_shape"),
        ("test_images", "arrays_shape"),
        ("train_labels", "class_counts"),
        ("champion_model", "quality_bar"),
        ("production_drift", "drift_within_bounds"),
    }
    (quality_bar,) = [s for s in defs.resolve_assets_def("champion_model").check_specs if s.name == "quality_bar"]
    assert quality_bar.blocking
    assert all(spec.blocking for spec in defs.resolve_assets_def("raw_images").check_specs)  # nothing trains on bad data
    (near_duplicates,) = defs.resolve_assets_def("validation_split").check_specs
    assert not near_duplicates.blocking  # a warning: the data set has some


def test_the_gates_the_split_and_the_election_rules_default_to_the_profile_in_the_launchpad():
    for profile in PROFILES.values():
        built = build_defs(profile)
        champion = built.resolve_assets_def("champion_model").op.config_schema.config_type.fields
        assert champion["min_roc_auc"].default_value == profile.min_champion_roc_auc
        assert champion["min_comparison_images"].default_value == profile.min_comparison_images
        assert (champion["min_improvement"].default_value, champion["confidence"].default_value) == (0.0, 0.95)
        split = built.resolve_assets_def("validation_split").op.config_schema.config_type.fields
        assert (split["validation_fraction"].default_value, split["split_seed"].default_value) == (profile.validation_fraction, 42)
        gates = built.resolve_assets_def("raw_images").op.config_schema.config_type.fields
        assert gates["min_images_per_class"].default_value == profile.min_images_per_class
        assert (gates["max_rejected_share"].default_value, gates["max_shrinkage"].default_value) == (0.05, 0.10)
    assert PROFILES["smoke"].min_champion_roc_auc == 0.0  # a one-epoch smoke model must be able to pass
    default = PROFILES["default"]
    assert (default.min_champion_roc_auc, default.min_comparison_images, default.validation_fraction) == (0.80, 100, 0.2)


def test_seed_model_params_are_the_base_defaults():
    config = TrainingConfig()
    assert (config.epochs, config.batch_size, config.learning_rate, config.optimizer) == (2, 64, 1e-5, "adam")
    assert (config.activation, config.pooling) == ("relu", "avg")
    assert not {"validation_split", "split_seed"} & set(TrainingConfig.model_fields)  # the validation_split asset's


def test_every_model_asset_has_a_code_version_and_launchpad_config():
    graph = _graph()
    for name in MODELS | CANDIDATES:
        assert graph.get(dg.AssetKey(name)).code_version
    for name in MODELS - set(ENSEMBLES):
        op = defs.resolve_assets_def(name).op
        assert "learning_rate" in op.config_schema.config_type.fields
    for name in ENSEMBLES:  # it fits nothing: only the settings of its threshold
        fields = defs.resolve_assets_def(name).op.config_schema.config_type.fields
        assert set(fields) == {"batch_size", "target_recall", "recall_confidence"}
