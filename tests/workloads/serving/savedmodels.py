"""``make_test_savedmodel``: a STAND-IN for the real exporter until it lands in main.

It exports a tiny Keras model with exactly the signatures of docs/interfaces.md:
``serving_default`` (``images`` float32 [N, 28, 28], raw 0-255 -> ``scores`` float32 [N, 10],
``class_ids`` int64 [N]) and ``serving_bytes`` (``image_bytes`` string [N], PNG/JPEG of any size,
grey or colour -> the same outputs), with the preprocessing inside the graph. Different seeds give
different weights, so tests can tell versions apart by their scores. Like the real exporter it
writes to a temporary name and renames, so a polling server never sees half a version.
"""

from __future__ import annotations

import os
import pathlib
import shutil


def make_test_savedmodel(base_path: pathlib.Path, version: int, seed: int = 0) -> pathlib.Path:
    """Exports version ``version`` under ``base_path`` and returns its directory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )

    class Export(tf.Module):
        def __init__(self, classifier) -> None:
            super().__init__()
            self.classifier = classifier

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name="images")])
        def serving_default(self, images):
            scores = self.classifier(images, training=False)
            return {"scores": scores, "class_ids": tf.argmax(scores, axis=1)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serving_bytes(self, image_bytes):
            def decode(encoded):
                image = tf.io.decode_image(encoded, channels=1, expand_animations=False)
                return tf.reshape(tf.image.resize(tf.cast(image, tf.float32), [28, 28]), [28, 28])

            images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.float32)
            return self.serving_default(images)

    module = Export(model)
    base_path.mkdir(parents=True, exist_ok=True)
    final = base_path / str(version)
    staging = base_path / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    tf.saved_model.save(
        module,
        str(staging),
        signatures={"serving_default": module.serving_default, "serving_bytes": module.serving_bytes},
    )
    staging.rename(final)
    return final
