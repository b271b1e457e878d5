import io

import numpy as np
import pytest
from PIL import Image

from ml.config import ModelConfig
from ml.gradcam import (
    gradcam,
    gradcam_reference,
    predict_and_gradcam,
    render_heatmap_png,
    render_overlay,
)
from ml.models import build_model


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize(
    "arch,size",
    [("custom_cnn", 64), ("vgg16", 64), ("resnet50v2", 64), ("efficientnetv2b0", 64)],
)
def test_fast_path_matches_tf_keras_vis_on_random_inputs(arch, size):
    import keras

    keras.utils.set_random_seed(1)
    model = build_model(ModelConfig(arch, input_size=size))
    x = np.random.default_rng(2).uniform(0, 1, (3, size, size, 3)).astype(np.float32)
    fast = gradcam(model, x)
    ref = gradcam_reference(model, x)
    assert fast.shape == ref.shape == (3, size, size)
    for f, r in zip(fast, ref, strict=True):
        if r.max() > 0:  # a map that is all zeros after ReLU has no correlation to speak of
            assert _corr(f, r) >= 0.999


def test_fast_path_returns_the_models_probabilities():
    model = build_model(ModelConfig("custom_cnn", input_size=32))
    x = np.random.default_rng(0).uniform(0, 1, (5, 32, 32, 3)).astype(np.float32)
    probs, cams = predict_and_gradcam(model, x, batch_size=2)
    np.testing.assert_allclose(probs, np.asarray(model(x)).reshape(-1), rtol=1e-4, atol=1e-5)
    assert cams.dtype == np.float32 and cams.min() >= 0 and cams.max() <= 1


def test_grad_cam_plus_plus_is_available():
    model = build_model(ModelConfig("custom_cnn", input_size=32))
    x = np.random.default_rng(0).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)
    assert gradcam_reference(model, x, plus_plus=True).shape == (1, 32, 32)


def _square_images(n: int, rng: np.random.Generator, size: int = 32):
    x = rng.uniform(0, 0.3, (n, size, size, 1)).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.float32)
    corners = []
    for i in range(n):
        r, c = rng.integers(2, size - 10, size=2)
        corners.append((r, c))
        if y[i]:
            x[i, r : r + 8, c : c + 8] = 1.0
    return np.repeat(x, 3, axis=-1), y, corners


def test_grad_cam_of_a_model_that_learnt_a_bright_square_peaks_inside_it():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(inputs)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_b")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="prediction")(h)
    model = keras.Model(inputs, outputs, name="square_finder")
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x, y, _ = _square_images(256, rng)
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    xt, yt, corners = _square_images(10, np.random.default_rng(9))
    pos = yt == 1
    assert model.evaluate(xt, yt, verbose=0)[1] >= 0.9
    cams = gradcam(model, xt[pos], "conv_b")
    for cam, (r, c) in zip(cams, [c for c, p in zip(corners, pos, strict=True) if p], strict=True):
        pr, pc = np.unravel_index(int(np.argmax(cam)), cam.shape)
        assert r - 1 <= pr <= r + 8 and c - 1 <= pc <= c + 8


def test_overlay_is_a_png_of_the_image_size():
    image = np.random.default_rng(0).integers(0, 4096, (50, 40), dtype=np.uint16)
    heat = np.zeros((10, 8), np.float32)
    heat[5, 4] = 1.0
    png = render_overlay(image, heat, alpha=0.4)
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG" and im.mode == "RGB" and im.size == (40, 50)


def test_cold_regions_of_the_overlay_show_the_film_unchanged():
    image = np.full((20, 20), 100, np.uint8)
    png = render_overlay(image, np.zeros((20, 20), np.float32))
    assert (np.asarray(Image.open(io.BytesIO(png))) == 100).all()


def test_heatmap_png_is_transparent_where_cold():
    heat = np.zeros((16, 16), np.float32)
    heat[8:, 8:] = 1.0
    im = Image.open(io.BytesIO(render_heatmap_png(heat)))
    assert im.mode == "RGBA" and im.size == (16, 16)
    alpha = np.asarray(im)[..., 3]
    assert alpha[:8, :8].max() == 0 and alpha[8:, 8:].min() > 0
