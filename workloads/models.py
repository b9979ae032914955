"""The three CNN variants of the reference system, in a registry, written with backend-neutral Keras 3.

Every model takes ``images``: float32 ``[N, 28, 28]`` raw pixel intensities 0-255 (what the IDX files
and shards hold) and returns class probabilities ``[N, 10]``. The scaling to [0, 1] is the model's
first layer, so training, evaluation and the exported serving signatures cannot disagree (the
reference system trained on [0, 1] and served 0-255). Only ``keras.layers`` are used, no ``tf.*``
ops, so the same definitions run under the TensorFlow and the PyTorch backends.

The variants share one trunk and differ only where their names say: ``dropout`` adds dropout before
the classifier, ``batchnorm`` normalises after each convolution. The trunk is small enough to train
on two CPU cores in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from workloads.core.errors import WorkloadError

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
INPUT_NAME = "images"


class UnknownModelError(WorkloadError):
    """A model name that is not in the registry; the message lists the valid ones."""


def _conv_block(x: Any, filters: int, batchnorm: bool) -> Any:
    import keras

    x = keras.layers.Conv2D(filters, 3, use_bias=not batchnorm)(x)
    if batchnorm:
        # Momentum 0.9 (Keras' default is 0.99): the moving statistics, which inference uses, settle
        # within the few hundred steps of a short run instead of lagging behind the weights.
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.Activation("relu")(x)
    return keras.layers.MaxPooling2D(2)(x)


def _cnn(name: str, *, dropout: float = 0.0, batchnorm: bool = False) -> Any:
    import keras

    images = keras.Input(shape=IMAGE_SHAPE, dtype="float32", name=INPUT_NAME)
    x = keras.layers.Rescaling(1.0 / 255.0, name="scale_0_255_to_0_1")(images)
    x = keras.layers.Reshape((*IMAGE_SHAPE, 1))(x)
    x = _conv_block(x, 16, batchnorm)
    x = _conv_block(x, 32, batchnorm)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    scores = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="scores")(x)
    return keras.Model(images, scores, name=name)


MODELS: dict[str, Callable[[], Any]] = {
    "plain": lambda: _cnn("plain"),
    "dropout": lambda: _cnn("dropout", dropout=0.5),
    "batchnorm": lambda: _cnn("batchnorm", batchnorm=True),
}


def model_names() -> list[str]:
    return list(MODELS)


def unknown_models(names: Sequence[str]) -> str | None:
    """What is wrong with ``names`` (those not in the registry), or None when every one is known."""
    unknown = [name for name in names if name not in MODELS]
    return f"unknown model(s) {unknown}; valid models: {', '.join(MODELS)}" if unknown else None


def build_model(name: str, *, seed: int | None = None) -> Any:
    """A fresh, uncompiled Keras model; ``seed`` fixes the initial weights."""
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    if seed is not None:
        import keras

        keras.utils.set_random_seed(seed)
    return MODELS[name]()


def moving_statistics(model: Any) -> list[Any]:
    """The batch-norm moving means and variances: state that is not trained by gradients.

    In data-parallel training each replica updates these from its own batches, so replicas drift
    apart; trainers average them across replicas before a checkpoint and at the end.
    """
    import keras

    return [
        variable
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for variable in (layer.moving_mean, layer.moving_variance)
    ]
