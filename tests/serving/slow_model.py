"""A real Keras model that misbehaves on cue, and the real server that serves it.

Its call hangs on an all-white image (after touching the file named by $HANG_STARTED_FILE, so a
test knows the call is running), answers NaN for an all-grey one, and, saved with
`always_nan`, answers NaN for everything (so its warm-up fails).

`python -m tests.serving.slow_model --port N` runs `serving.app:app` under uvicorn after
importing this module, so Keras finds the custom layer when serving loads the model.
"""

import argparse
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

HANG_S = 15.0
"""How long a call with a white image takes: far over the test's SERVING_PREDICT_TIMEOUT_S."""
SIZE = 32
GREY = 7
"""The value of every pixel of an image the model answers NaN for."""
HANG_STARTED = "HANG_STARTED_FILE"
tf.config.threading.set_inter_op_parallelism_threads(16)
"""py_function runs on TF's inter-op threads (one per core by default): abandoned hung calls, each
asleep on one for HANG_S, must leave threads for the calls after them."""


def _misbehave(images, always_nan):
    flat = images.numpy().reshape(len(images), -1)
    if (flat == 255).all(axis=1).any():
        if os.environ.get(HANG_STARTED):
            open(os.environ[HANG_STARTED], "w").close()
        time.sleep(HANG_S)
    passed = images.numpy().astype(np.float32)
    passed[(flat == GREY).all(axis=1) | bool(always_nan)] = np.nan
    return passed


@keras.saving.register_keras_serializable(package="serving_tests")
class HangOnWhite(keras.layers.Layer):
    """Passes images through as floats; a batch holding an all-white image first sleeps HANG_S, one
    holding an all-grey image (or any, with `always_nan`) becomes NaN."""

    def __init__(self, always_nan: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.always_nan = always_nan

    def get_config(self):
        return {**super().get_config(), "always_nan": self.always_nan}

    def call(self, images):
        passed = tf.py_function(_misbehave, [images, self.always_nan], Tout=tf.float32)
        passed.set_shape(images.shape)
        return passed

    def compute_output_shape(self, input_shape):
        return input_shape


def save_slow_model(folder: Path, always_nan: bool = False) -> Path:
    """An MLflow model folder serving loads like any champion (input (N, 32, 32, 3) uint8)."""
    import mlflow

    images = keras.Input((SIZE, SIZE, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(HangOnWhite(always_nan)(images))
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(images, keras.layers.Dense(1, activation="sigmoid")(x))
    mlflow.keras.save_model(model, str(folder), pip_requirements=[f"keras=={keras.__version__}"])
    return folder


def plain_png(value: int) -> bytes:
    """A SIZE x SIZE PNG whose every pixel is `value`: 255 hangs the model, GREY makes it answer NaN."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((SIZE, SIZE, 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def white_png() -> bytes:
    return plain_png(255)


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run("serving.app:app", host="127.0.0.1", port=parser.parse_args().port)
