"""Where the breast is on a film: the one mask patch extraction and whole-film scoring share.

Training cuts normal tiles from inside it (``ml.data``) and the predictor scores only the
patches that are mostly breast (``ml.predictor``), so both must find the same breast.
"""

from __future__ import annotations

import numpy as np


def breast_mask(image: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Boolean mask of the breast: the largest bright connected region, holes filled.

    Worked out on a 4x reduced copy (fast, and film labels or scratches are small), then
    brought back to full size. The threshold defaults to a low fraction of the image range
    so dense and fatty breasts both fall inside it.
    """
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape
    f = 4 if min(h, w) >= 64 else 1
    small = img[: h - h % f or h, : w - w % f or w]
    if f > 1:
        small = small.reshape(small.shape[0] // f, f, small.shape[1] // f, f).mean(axis=(1, 3))
    lo, hi = float(np.percentile(small, 1)), float(small.max())
    if threshold is None:
        threshold = lo + 0.08 * (hi - lo)
    fg = small > threshold
    fg = ndimage.binary_opening(fg, iterations=2)
    labels, n = ndimage.label(fg)
    if n == 0:
        return np.zeros((h, w), dtype=bool)
    sizes = ndimage.sum(fg, labels, index=range(1, n + 1))
    mask = labels == (int(np.argmax(sizes)) + 1)
    mask = ndimage.binary_fill_holes(mask)
    if f > 1:
        mask = np.kron(mask, np.ones((f, f), dtype=bool))
        full = np.zeros((h, w), dtype=bool)
        full[: mask.shape[0], : mask.shape[1]] = mask
        mask = full
    return mask
