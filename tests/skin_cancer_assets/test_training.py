"""Training helpers on real numbers: the learning rate, the recipes."""

import numpy as np
import pytest

from skin_cancer_assets import training
from skin_cancer_assets.model_zoo import ZOO, build_model
from skin_cancer_assets.training_config import TrainingConfig


@pytest.mark.parametrize("spec", ZOO, ids=lambda spec: spec.name)
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
        config.model_copy(update={"epochs": 1, "batch_size": 4, "k_folds": 2, "validation_split": 0.5, "run_eagerly": True}),
        images,
        labels,
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
        learning_rate=0.01, cosine_decay=True, epochs=2, batch_size=4, image_size=32, validation_split=0.5, run_eagerly=True
    )
    model = training.train(ZOO[0], config, images, labels, lambda *_: None).model
    schedule = model.optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "CosineDecay" and schedule["config"]["initial_learning_rate"] == 0.01
    assert schedule["config"]["decay_steps"] == 2  # 4 training images in batches of 4, 2 epochs
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-7)
