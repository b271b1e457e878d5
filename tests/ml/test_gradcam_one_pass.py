"""The one-pass Grad-CAM equals the two-pass computation it replaces.

Two passes is the textbook way: a forward pass for the scores, then a second forward pass
under a gradient tape for the maps, zoomed with SciPy. The worker's path records one
forward pass on the tape, takes the scores from it and zooms in the graph; the numbers
must be the same to float rounding, for a small model and for the shipped one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ml.artifacts import DEFAULT_ARTIFACT
from ml.gradcam import predict_and_gradcam
from ml.models import OUTPUT_LAYER
from tests.ml.conftest import random_patches


def two_pass(model: Any, x: np.ndarray, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """Scores from a forward pass; maps from a second, eager one; SciPy's zoom."""
    import keras
    import tensorflow as tf
    from scipy.ndimage import zoom

    probs = np.asarray(model.predict_on_batch(x)).reshape(-1)
    head = model.get_layer(OUTPUT_LAYER)
    sub = keras.Model(model.inputs, [model.get_layer(layer).output, head.input])
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        conv, features = sub(xt, training=False)
        logit = tf.matmul(features, head.kernel) + head.bias
        target = logit[:, 0]  # each map's own logit: the samples do not interact
    grads = tape.gradient(target, conv).numpy()
    conv = conv.numpy()
    cams = np.maximum((conv * grads.mean(axis=(1, 2), keepdims=True)).sum(-1), 0.0)
    size = x.shape[1:3]
    big = zoom(cams, (1.0, size[0] / cams.shape[1], size[1] / cams.shape[2]), order=1)
    lo = big.min(axis=(1, 2), keepdims=True)
    hi = big.max(axis=(1, 2), keepdims=True)
    return probs, ((big - lo) / (hi - lo + 1e-7)).astype(np.float32)


def spot_finder() -> Any:
    """A small named model: two convolutions, pooling, the project's sigmoid head."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((48, 48, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(inputs)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_b")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(1, activation="sigmoid", name=OUTPUT_LAYER)(h)
    return keras.Model(inputs, outputs, name="spot_finder")


def test_one_pass_equals_two_passes_on_a_small_named_model():
    model = spot_finder()
    x = np.random.default_rng(4).uniform(0, 1, (5, 48, 48, 3)).astype(np.float32)
    probs, cams = predict_and_gradcam(model, x, "conv_b", batch_size=2)
    ref_probs, ref_cams = two_pass(model, x, "conv_b")
    assert cams.shape == ref_cams.shape == (5, 48, 48)
    assert (ref_cams.max(axis=(1, 2)) > 0.99).all()  # real maps, not all-zero ones
    np.testing.assert_allclose(probs, ref_probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cams, ref_cams, atol=1e-4)


@pytest.mark.skipif(
    not (DEFAULT_ARTIFACT / "manifest.json").is_file(), reason="shipped model not present"
)
def test_one_pass_equals_two_passes_on_the_shipped_model_from_grayscale_patches():
    """The worker's form: 0..255 grayscale patches, channels and scaling inside the graph."""
    from ml.predictor import Predictor, model_input

    predictor = Predictor.load()
    patches, _ = random_patches(6, seed=5)
    probs, cams = predictor.explain_patches(patches)
    x = model_input(patches.astype(np.float32), predictor.manifest.input_size, predictor.method)
    ref_probs, ref_cams = two_pass(predictor.model, x, predictor.gradcam_layer or "conv4")
    assert cams.shape == ref_cams.shape == (6, 299, 299)
    assert (ref_cams.max(axis=(1, 2)) > 0.99).all()
    np.testing.assert_allclose(probs, ref_probs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cams, ref_cams, atol=1e-3)


def test_streamed_predictions_equal_each_film_scored_alone(tiny_artifact):
    """The worker takes each film as soon as the batches holding its patches are through;
    a batch shared by two films must not mix their numbers up."""
    from ml.predictor import Predictor

    predictor = Predictor.load(tiny_artifact)
    rng = np.random.default_rng(6)
    films = [rng.integers(0, 200, shape).astype(np.uint8) for shape in ((300, 260), (90, 80))]
    streamed = list(predictor.iter_predictions(films))
    assert len(streamed[0].patch_boxes) % predictor.whole_image.batch_size != 0  # a shared batch
    assert len(streamed) == 2
    for film, a in zip(films, streamed, strict=True):
        (alone,) = predictor.predict_images([film])
        assert a.probability == pytest.approx(alone.probability, abs=1e-5)
        np.testing.assert_allclose(a.heatmap, alone.heatmap, atol=1e-4)
        assert np.array_equal(a.patch_boxes, alone.patch_boxes)
        assert a.timings["predict"] > 0
