"""Training helpers on real numbers: the learning rate, the recipes."""

import math

import numpy as np
import pytest

from skin_cancer_assets import training
from skin_cancer_assets.model_zoo import ZOO, build_model
from skin_cancer_assets.training_config import EnsembleConfig, TrainingConfig
from skin_cancer_contract.evaluation import threshold_for_recall


TRAINED = [spec for spec in ZOO if not spec.members]
ENSEMBLE = next(spec for spec in ZOO if spec.members)


def halves(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows (fitted on, held out): the first and the second half, as the `validation_split` asset's rows."""
    return np.arange(count // 2), np.arange(count // 2, count)


@pytest.mark.parametrize("spec", TRAINED, ids=lambda spec: spec.name)
def test_models_take_uint8_images_and_apply_the_learning_rate(spec):
    config = TrainingConfig(learning_rate=0.0123, image_size=32)
    model = build_model(spec, config, input_size=48)
    assert model.input.dtype == "uint8" and model.input_shape == (None, 48, 48, 3)
    assert model.output_shape == (None, 1)
    images = np.random.default_rng(1).integers(0, 256, (8, 48, 48, 3), dtype=np.uint8)
    labels = np.array([0, 1] * 4)  # 4 for training: 2 folds of 2
    logged = []
    trained = training.train(
        spec,
        config.model_copy(update={"epochs": 1, "batch_size": 4, "k_folds": 2, "run_eagerly": True}),
        images,
        labels,
        halves(8),
        lambda prefix, epoch, metrics: logged.append(prefix),
    )
    compiled = trained.model
    if spec.cross_validated:  # the served ensemble averages compiled fold models
        compiled = next(layer for layer in trained.model.layers if getattr(layer, "optimizer", None))
    assert float(compiled.optimizer.learning_rate) == pytest.approx(0.0123)
    probs = training.predict(trained.model, images)
    assert probs.shape == (8,) and np.all((probs >= 0) & (probs <= 1))
    if spec.cross_validated:
        assert logged == ["fold_0_", "fold_1_"] and len(trained.fold_metrics) == 2


def test_cosine_decay_takes_the_learning_rate_to_zero_over_the_epochs():
    images = np.random.default_rng(2).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 1] * 4)
    config = TrainingConfig(
        learning_rate=0.01, cosine_decay=True, epochs=2, batch_size=4, image_size=32, run_eagerly=True
    )
    model = training.train(ZOO[0], config, images, labels, halves(8), lambda *_: None).model
    schedule = model.optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "CosineDecay" and schedule["config"]["initial_learning_rate"] == 0.01
    assert schedule["config"]["decay_steps"] == 2  # 4 training images in batches of 4, 2 epochs
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-7)


def test_a_pretrained_backbone_trains_the_head_first_then_its_top_blocks():
    """The zoo's pretrained model: its head alone in the frozen epochs, then blocks from `fine_tune_from_block`."""
    from skin_cancer_assets.efficientnet_lite import read_torch_legacy, weights_path
    from skin_cancer_assets.training_config import config_class_for

    spec = next(spec for spec in ZOO if spec.block_of_layer)
    config = config_class_for(spec.name, spec.defaults)().model_copy(
        update={
            "epochs": 2, "frozen_epochs": 1, "fine_tune_from_block": 14, "learning_rate": 0.01,
            "fine_tune_learning_rate": 0.002, "cosine_decay": False, "batch_size": 4, "image_size": 32,
            "run_eagerly": True,
        }
    )
    assert training._phases(spec, config) == [(range(0, 1), 0.01, math.inf), (range(1, 2), 0.002, 14)]
    assert training._phases(spec, config.model_copy(update={"epochs": 1, "frozen_epochs": 2})) == [
        (range(0, 1), 0.01, math.inf)  # the smoke profile's single epoch: the head only
    ]
    import keras

    keras.utils.set_random_seed(config.seed)  # as train() does: the head starts where training's starts
    pretrained = build_model(spec, config, input_size=48)
    checkpoint = read_torch_legacy(weights_path())["_blocks.0._depthwise_conv.weight"]
    np.testing.assert_array_equal(pretrained.get_layer("block0_depthwise_conv").get_weights()[0], checkpoint.transpose(2, 3, 0, 1))

    images, labels = np.random.default_rng(3).integers(0, 256, (8, 48, 48, 3), dtype=np.uint8), np.array([0, 1] * 4)
    head_only = training.train(spec, config.model_copy(update={"epochs": 1}), images, labels, halves(8), lambda *_: None)
    assert _changed_layers(head_only.model, pretrained) == {"malignant"}

    epochs = []
    trained = training.train(spec, config, images, labels, halves(8), lambda prefix, epoch, metrics: epochs.append(epoch))
    assert epochs == [0, 1] and len(trained.history["loss"]) == 2
    tuned = {"block14_expand_conv", "block14_depthwise_conv", "block14_project_conv", "block15_expand_conv",
             "block15_depthwise_conv", "block15_project_conv", "top_conv"}  # batch norms keep their statistics
    assert _changed_layers(trained.model, pretrained) == tuned | {"malignant"}


def test_frozen_blocks_run_once_and_the_epochs_run_the_rest():
    """Blocks that no phase trains give the same output every epoch: computed once, the epochs run the layers above."""
    spec = next(spec for spec in ZOO if spec.block_of_layer)
    config = TrainingConfig(epochs=2, frozen_epochs=1, fine_tune_from_block=14, image_size=32)
    model = build_model(spec, config, input_size=48)
    images = np.random.default_rng(4).integers(0, 256, (8, 48, 48, 3), dtype=np.uint8)

    def trained_blocks(config):
        part, inputs = training._part_that_trains(model, spec, config, training._phases(spec, config), images)
        if part is not model:  # the upper part on the frozen blocks' outputs is the whole model on the images
            assert len(inputs) == len(images)
            np.testing.assert_allclose(training.predict(part, inputs), training.predict(model, images), rtol=1e-5, atol=1e-6)
        return part is model, {spec.block_of_layer(layer.name) for layer in part.layers} - {None}

    assert trained_blocks(config) == (False, {14, 15})
    assert trained_blocks(config.model_copy(update={"epochs": 1})) == (False, set())  # the head alone
    # New random transforms every epoch, and with block 0 training nothing stays frozen: the whole model runs.
    assert trained_blocks(config.model_copy(update={"augment": True}))[0]
    assert trained_blocks(config.model_copy(update={"fine_tune_from_block": 0}))[0]


def _changed_layers(model, before) -> set[str]:
    return {
        layer.name
        for layer in model.layers
        if layer.weights
        and not all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), before.get_layer(layer.name).get_weights()))
    }


def test_a_models_launchpad_config_keeps_each_settings_description():
    from skin_cancer_assets.training_config import config_class_for

    config = config_class_for("basic_cnn", {"epochs": 20, "frozen_epochs": 0})
    assert config().epochs == 20
    for name in ("epochs", "frozen_epochs"):
        assert config.model_fields[name].description == TrainingConfig.model_fields[name].description is not None


def test_an_ensemble_serves_the_mean_of_its_members_log_odds(tmp_path):
    import keras

    config = TrainingConfig(image_size=32)
    members = []
    for seed, name, bias in ((1, "first", 3.0), (2, "second", -1.0)):
        keras.utils.set_random_seed(seed)
        member = build_model(ZOO[0], config, input_size=48, name=name)
        kernel, _ = member.get_layer("malignant").get_weights()
        member.get_layer("malignant").set_weights([kernel * 50, np.array([bias], np.float32)])  # a sure and an unsure one
        members.append(member)
    images = np.random.default_rng(4).integers(0, 256, (16, 48, 48, 3), dtype=np.uint8)
    labels = np.array([0, 1] * 8)

    _, val_rows = halves(16)
    combined = training.combine(ENSEMBLE, EnsembleConfig(batch_size=8), members, images[val_rows], labels[val_rows])

    def log_odds(p):
        return np.log(p / (1 - p))

    each = [training.predict(member, images).astype(np.float64) for member in members]
    expected = 1 / (1 + np.exp(-(log_odds(each[0]) + log_odds(each[1])) / 2))
    assert not np.allclose(expected, (each[0] + each[1]) / 2, atol=1e-4)  # the members disagree enough to tell
    probs = training.predict(combined.model, images)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(combined.validation_probabilities, expected[val_rows], atol=1e-5)
    assert combined.threshold == threshold_for_recall(labels[val_rows], combined.validation_probabilities, 0.90, 0.95)
    assert combined.history == {} and combined.model.name == ENSEMBLE.name

    combined.model.save(tmp_path / "ensemble.keras")  # Keras layers only: loads in safe mode, nothing to import
    reloaded = keras.saving.load_model(tmp_path / "ensemble.keras", safe_mode=True)
    np.testing.assert_allclose(training.predict(reloaded, images), probs, atol=1e-6)


def test_the_seed_draws_the_weights_and_the_given_rows_are_held_out():
    """Retraining a model with another `seed`, to see its spread, keeps the split every model shares."""
    images, labels = np.random.default_rng(6).integers(0, 256, (16, 48, 48, 3), dtype=np.uint8), np.array([0, 1] * 8)
    config = TrainingConfig(epochs=1, batch_size=4, image_size=32, run_eagerly=True)
    fitted, held_out = halves(16)
    outputs = []
    for seed in (1, 2):
        trained = training.train(ZOO[0], config.model_copy(update={"seed": seed}), images, labels, (fitted, held_out), lambda *_: None)
        np.testing.assert_allclose(trained.validation_probabilities, training.predict(trained.model, images[held_out]), rtol=0, atol=1e-6)
        outputs.append(trained.validation_probabilities)
    assert not np.allclose(*outputs)  # other initial weights


def test_an_ensemble_refuses_a_member_without_a_sigmoid_output():
    crossval = next(spec for spec in ZOO if spec.cross_validated)
    images, labels = np.random.default_rng(5).integers(0, 256, (8, 48, 48, 3), dtype=np.uint8), np.array([0, 1] * 4)
    config = TrainingConfig(epochs=1, batch_size=4, k_folds=2, image_size=32, run_eagerly=True)
    folds = training.train(crossval, config, images, labels, halves(8), lambda *_: None).model
    with pytest.raises(ValueError, match=f"member {crossval.name} does not end in a sigmoid Dense layer"):
        training.combine(ENSEMBLE, EnsembleConfig(), [folds], images, labels)
