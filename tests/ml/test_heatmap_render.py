"""The heatmap PNG the worker stores shows the same pixels as matplotlib's colouring."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
from PIL import Image

from ml.gradcam import render_heatmap_png, render_overlay


def matplotlib_rgba(heat: np.ndarray, cmap: str = "jet", max_alpha: float = 0.8) -> np.ndarray:
    """The colouring as first written: matplotlib's float RGBA per pixel, rounded to bytes."""
    heat = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    rgba = np.empty((*heat.shape, 4), dtype=np.uint8)
    rgba[..., :3] = (matplotlib.colormaps[cmap](heat)[..., :3] * 255).round().astype(np.uint8)
    rgba[..., 3] = (np.nan_to_num(heat, nan=0.0) * max_alpha * 255).round().astype(np.uint8)
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
    pixels = np.asarray(Image.open(io.BytesIO(png)))
    assert np.array_equal(pixels, matplotlib_rgba(heat))
    assert pixels[3, 5, 3] == 0  # no value, nothing drawn over the film


def test_an_overlay_shows_the_film_untouched_where_the_heatmap_has_no_value():
    film = np.tile(np.arange(64, dtype=np.uint8) * 4, (40, 1))
    heat = np.full((40, 64), 0.9, np.float32)
    heat[3, 5] = np.nan
    pixels = np.asarray(Image.open(io.BytesIO(render_overlay(film, heat))))
    assert tuple(pixels[3, 5]) == (20, 20, 20)  # the film's own grey, nothing blended
    assert tuple(pixels[3, 6]) != (24, 24, 24)  # beside it, heat 0.9 is blended
