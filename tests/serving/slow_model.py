"""A real Keras model whose call hangs on an all-white image, and the real server that serves it.

`python -m tests.serving.slow_model --port N` runs `serving.app:app` under uvicorn after
importing this module, so Keras finds the custom layer when serving loads the model.
"""

import argparse
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

HANG_S = 15.0
"""How long a call with a white image takes: far over the test's SERVING_PREDICT_TIMEOUT_S."""
SIZE = 32


def _sleep_if_white(images):
    flat = images.numpy().reshape(len(images), -1)
    if (flat == 255).all(axis=1).any():
        time.sleep(HANG_S)
    return images


@keras.saving.register_keras_serializable(package="serving_tests")
class HangOnWhite(keras.layers.Layer):
    """Passes images through; a batch holding an all-white image first sleeps HANG_S."""

    def call(self, images):
        passed = tf.py_function(_sleep_if_white, [images], Tout=images.dtype)
        passed.set_shape(images.shape)
        return passed

    def compute_output_shape(self, input_shape):
        return input_shape


def save_slow_model(folder: Path) -> Path:
    """An MLflow model folder serving loads like any champion (input (N, 32, 32, 3) uint8)."""
    import mlflow

    images = keras.Input((SIZE, SIZE, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(HangOnWhite()(images))
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(images, keras.layers.Dense(1, activation="sigmoid")(x))
    mlflow.keras.save_model(model, str(folder), pip_requirements=[f"keras=={keras.__version__}"])
    return folder


def white_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((SIZE, SIZE, 3), 255, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run("serving.app:app", host="127.0.0.1", port=parser.parse_args().port)
