"""The model registry: three variants, raw 0-255 pixels in, class probabilities out."""

import numpy as np
import pytest

from workloads import models
from workloads.core.errors import WorkloadError


def test_an_unknown_model_fails_with_the_valid_names():
    with pytest.raises(
        WorkloadError, match="unknown model 'resnet'; valid models: plain, dropout, batchnorm"
    ):
        models.build_model("resnet")


@pytest.mark.slow
@pytest.mark.parametrize("name", models.model_names())
def test_every_variant_scales_raw_pixels_itself_and_returns_probabilities(name):
    import keras

    model = models.build_model(name, seed=1)
    assert model.input_shape == (None, 28, 28) and model.inputs[0].name == "images"
    rescale = model.layers[1]
    assert isinstance(rescale, keras.layers.Rescaling) and rescale.scale == pytest.approx(1 / 255)
    raw = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.float32)
    scores = np.asarray(model(raw, training=False))
    assert scores.shape == (5, 10) and np.allclose(scores.sum(axis=1), 1, atol=1e-5)


@pytest.mark.slow
def test_the_variants_differ_where_their_names_say():
    import keras

    kinds = {
        name: {type(layer) for layer in models.build_model(name).layers} for name in models.model_names()
    }
    assert keras.layers.Dropout in kinds["dropout"] and keras.layers.Dropout not in kinds["plain"]
    assert keras.layers.BatchNormalization in kinds["batchnorm"]
    assert keras.layers.BatchNormalization not in kinds["plain"] | kinds["dropout"]
