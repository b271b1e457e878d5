"""Grad-CAM: a fast compiled path for production and tf-keras-vis as the reference.

Both differentiate the *logit* (the pre-sigmoid output of the final Dense layer) with
respect to the chosen convolutional layer, weight its channels by the spatially averaged
gradient, keep the positive part, bring the map to the input size with first-order spline
zoom and scale each map to [0, 1] — the recipe of ``tf_keras_vis.gradcam.Gradcam``.
tf-keras-vis runs eagerly and is several times slower; ``gradcam`` runs one compiled,
batched forward-and-gradient pass and is tested against the reference and against a
two-pass computation (a forward pass for the scores, a second one for the maps).

Rendering (``render_overlay``, ``render_heatmap_png``) is separate and needs no TensorFlow.
"""

from __future__ import annotations

import functools
import io
import time
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from ml.models import GRADCAM_LAYER, OUTPUT_LAYER

_COMPILED: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def default_layer(model: Any) -> str:
    """The architecture's Grad-CAM layer, else the last layer with a 4-D output."""
    for layer_name in GRADCAM_LAYER.values():
        try:
            model.get_layer(layer_name)
            return layer_name
        except ValueError:
            continue
    for layer in reversed(model.layers):
        shape = getattr(layer, "output", None)
        if shape is not None and len(layer.output.shape) == 4:
            return layer.name
    raise ValueError("model has no convolutional layer")


def _head(model: Any) -> Any:
    try:
        return model.get_layer(OUTPUT_LAYER)
    except ValueError:
        return model.layers[-1]


def _compiled_fn(model: Any, layer_name: str, preprocessing: str | None = None) -> Any:
    """One tf.function per (model, layer, input form): probabilities and Grad-CAM maps together.

    The tape records the single forward pass that yields the scores; its gradient from the
    logit back to the layer is all Grad-CAM adds (no second forward pass). With
    ``preprocessing`` (a ``ml.models.PREPROCESSING`` method) the function takes 0..255
    grayscale patches (N, S, S) and builds the three-channel model input inside the graph,
    so the worker never materialises a float copy three channels wide of every patch.
    Cached beside the model in a weak map, so the model itself is never modified.
    """
    per_model = _COMPILED.setdefault(model, {})
    key = f"{layer_name}|{preprocessing or ''}"
    if key in per_model:
        return per_model[key]
    import keras
    import tensorflow as tf

    from ml.models import preprocess

    head = _head(model)
    sub = keras.Model(model.inputs, [model.get_layer(layer_name).output, head.input])
    shape = tuple(model.inputs[0].shape[1:])
    in_shape = shape[:2] if preprocessing else shape
    conv_h, conv_w = model.get_layer(layer_name).output.shape[1:3]
    rows = tf.constant(_zoom_matrix(conv_h, shape[0]))
    cols = tf.constant(_zoom_matrix(conv_w, shape[1]))

    @tf.function(input_signature=[tf.TensorSpec((None, *in_shape), tf.float32)])
    def fn(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if preprocessing:
            x = preprocess(tf.repeat(x[..., None], shape[-1], axis=-1), preprocessing)
        with tf.GradientTape() as tape:
            tape.watch(x)
            conv, features = sub(x, training=False)
            logit = tf.matmul(features, head.kernel) + head.bias
            score = tf.reduce_sum(logit[:, 0])
        grads = tape.gradient(score, conv)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(conv * weights, axis=-1))
        # zoom to the input size as two matrix products, then min-max scale each map
        big = tf.matmul(rows, tf.matmul(cam, cols, transpose_b=True))
        lo = tf.reduce_min(big, axis=(1, 2), keepdims=True)
        hi = tf.reduce_max(big, axis=(1, 2), keepdims=True)
        return tf.sigmoid(logit[:, 0]), (big - lo) / (hi - lo + 1e-7)

    per_model[key] = fn
    return fn


def _zoom_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of first-order spline zoom along one axis.

    ``scipy.ndimage.zoom(order=1)`` (grid_mode off, as tf-keras-vis calls it) samples input
    position ``i * (n_in - 1) / (n_out - 1)`` for output ``i`` and interpolates linearly
    between the two neighbours; as matrices the zoom is two small products per map inside
    the compiled pass, the same numbers to float rounding, instead of a separate SciPy
    pass over the full-size maps (which cost as much as the model for the shipped CNN).
    """
    m = np.zeros((n_out, n_in), np.float32)
    if n_in == 1 or n_out == 1:
        m[:, 0] = 1.0
        return m
    pos = np.arange(n_out) * ((n_in - 1) / (n_out - 1))
    lo = np.clip(np.floor(pos).astype(np.int64), 0, n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (pos - lo).astype(np.float32)
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def iter_predict_and_gradcam(
    model: Any,
    images: np.ndarray,
    layer_name: str | None = None,
    batch_size: int = 16,
    preprocessing: str | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    """``predict_and_gradcam`` batch by batch: (probabilities, maps, seconds) per batch, so a
    caller can use the first images' maps while the model works on the next batch."""
    layer_name = layer_name or default_layer(model)
    fn = _compiled_fn(model, layer_name, preprocessing)
    images = np.asarray(images, dtype=np.float32)
    for i in range(0, len(images), batch_size):
        start = time.perf_counter()
        p, c = fn(images[i : i + batch_size])
        probs, cams = p.numpy().astype(np.float32), c.numpy()
        yield probs, cams, time.perf_counter() - start


def predict_and_gradcam(
    model: Any,
    images: np.ndarray,
    layer_name: str | None = None,
    batch_size: int = 16,
    preprocessing: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N,) and Grad-CAM maps (N, H, W) in [0, 1], from one forward pass.

    ``images`` is a float32 batch at the model's input size, already preprocessed; or,
    with ``preprocessing`` (the manifest's method), 0..255 grayscale patches (N, H, W)
    that the compiled function replicates to three channels and preprocesses itself.
    """
    images = np.asarray(images, dtype=np.float32)
    batches = list(iter_predict_and_gradcam(model, images, layer_name, batch_size, preprocessing))
    if not batches:
        return np.zeros((0,), np.float32), np.zeros((0, *images.shape[1:3]), np.float32)
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def gradcam(model: Any, images: np.ndarray, layer_name: str | None = None) -> np.ndarray:
    """Grad-CAM heatmaps (N, H, W) in [0, 1]: the fast compiled path."""
    return predict_and_gradcam(model, images, layer_name)[1]


def gradcam_reference(
    model: Any, images: np.ndarray, layer_name: str | None = None, plus_plus: bool = False
) -> np.ndarray:
    """Grad-CAM (or Grad-CAM++) by tf-keras-vis on a clone of the model, score on the logit."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

    layer_name = layer_name or default_layer(model)
    cls = GradcamPlusPlus if plus_plus else Gradcam
    explainer = cls(model, model_modifier=ReplaceToLinear(), clone=True)
    cam = explainer(
        lambda output: output[:, 0],
        np.asarray(images, dtype=np.float32),
        penultimate_layer=layer_name,
        # use exactly the named layer: by default tf-keras-vis walks back to the last Conv2D,
        # which for ResNet50V2 skips the final BatchNorm + ReLU ("post_relu")
        seek_penultimate_conv_layer=False,
        expand_cam=True,
        normalize_cam=True,
    )
    return np.asarray(cam, dtype=np.float32)


# --------------------------------------------------------------------------- rendering


def _to_uint8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype == np.uint8:
        return img
    img = img.astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    return ((img - lo) / (hi - lo + 1e-7) * 255).astype(np.uint8)


def _resize_heatmap(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    h = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    if h.shape == shape:
        return h
    im = Image.fromarray(h).resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(im), 0.0, 1.0)


def _colourise(heatmap: np.ndarray, cmap: str) -> np.ndarray:
    import matplotlib

    return matplotlib.colormaps[cmap](heatmap)[..., :3]


@functools.cache
def _colour_table(cmap: str) -> np.ndarray:
    """The colormap's lookup table as bytes: (N, 3) uint8, each entry rounded once."""
    import matplotlib

    colormap = matplotlib.colormaps[cmap]
    return (colormap(np.arange(colormap.N))[:, :3] * 255).round().astype(np.uint8)


def _colour_bytes(heat: np.ndarray, cmap: str) -> np.ndarray:
    """``(_colourise(heat) * 255).round()`` as uint8 for finite heat in [0, 1], the same
    bytes: matplotlib indexes its table by ``int(x * N)`` (x = 1 takes the last entry), so
    the rounding is done on the table instead of on every pixel's float64 RGBA."""
    table = _colour_table(cmap)
    n = len(table)
    index = heat * np.float32(n)
    index[index == n] = n - 1
    return table[index.astype(np.intp)]


def render_overlay(
    image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, cmap: str = "jet"
) -> bytes:
    """PNG of the grayscale image with the heatmap blended on top.

    The blend weight is ``alpha * heat`` per pixel, so cold regions show the film untouched.
    The heatmap is resized to the image when their sizes differ.
    """
    from PIL import Image

    gray = _to_uint8(image)
    if gray.ndim == 3:
        gray = gray[..., 0]
    heat = _resize_heatmap(heatmap, gray.shape)
    base = np.repeat(gray[..., None].astype(np.float32) / 255.0, 3, axis=-1)
    weight = (alpha * np.nan_to_num(heat, nan=0.0))[..., None]  # no value: the film alone
    out = (1 - weight) * base + weight * _colourise(heat, cmap)
    buf = io.BytesIO()
    Image.fromarray((out * 255).round().astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def render_heatmap_png(
    heatmap: np.ndarray, cmap: str = "jet", max_alpha: float = 0.8, compress_level: int = 1
) -> bytes:
    """RGBA PNG of the heatmap alone; opacity grows with heat so it can sit over the film.

    zlib level 1 by default: the same pixels as level 6 in about a third of the encoding
    time (a 1024 x 832 map: about 26 ms instead of 73 ms, 0.38 MB instead of 0.26 MB),
    and encoding is on the worker's path for every film.
    """
    from PIL import Image

    heat = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    rgba = np.empty((*heat.shape, 4), dtype=np.uint8)
    if np.isfinite(heat).all():
        rgba[..., :3] = _colour_bytes(heat, cmap)
    else:  # matplotlib's "bad" colour for NaN
        rgba[..., :3] = (_colourise(heat, cmap) * 255).round().astype(np.uint8)
    # NaN (no value) is see-through, stated rather than left to a float-to-byte cast
    # whose result numpy does not define.
    opacity = np.nan_to_num(heat, nan=0.0)
    rgba[..., 3] = (opacity * max_alpha * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()
