"""The heatmap PNG the worker stores shows the same pixels as matplotlib's colouring."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
from PIL import Image

from ml.gradcam import render_heatmap_png


def matplotlib_rgba(heat: np.ndarray, cmap: str = "jet", max_alpha: float = 0.8) -> np.ndarray:
    """The colouring as first written: matplotlib's float RGBA per pixel, rounded to bytes."""
    heat = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    rgba = np.empty((*heat.shape, 4), dtype=np.uint8)
    rgba[..., :3] = (matplotlib.colormaps[cmap](heat)[..., :3] * 255).round().astype(np.uint8)
    rgba[..., 3] = (heat * max_alpha * 255).round().astype(np.uint8)
    return rgba


def heat_with_every_table_edge() -> np.ndarray:
    """Random heat plus each colour-table boundary k/256, just below it, 0, 1 and beyond."""
    rng = np.random.default_rng(0)
    edges = (np.arange(257) / 256).astype(np.float32)
    below = np.nextafter(edges, np.float32(0))
    extra = np.array([-0.5, 0.0, 1.0, 1.5, 1e-9], np.float32)
    values = np.concatenate(
        [rng.uniform(0, 1, 40 * 64 - 519).astype(np.float32), edges, below, extra]
    )
    return values.reshape(40, 64)


@pytest.mark.parametrize("cmap", ["jet", "viridis"])
def test_heatmap_png_pixels_equal_matplotlibs_colouring(cmap):
    heat = heat_with_every_table_edge()
    png = render_heatmap_png(heat, cmap=cmap)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), matplotlib_rgba(heat, cmap))


def test_a_heatmap_with_nan_still_renders_as_matplotlib_does():
    heat = heat_with_every_table_edge()
    heat[3, 5] = np.nan
    png = render_heatmap_png(heat)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), matplotlib_rgba(heat))
