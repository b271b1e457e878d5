"""What every uploaded film must be, whatever its format: the refusal a check raises and the
blank-film rule. Below both format checks (``imaging`` for PNG and JPEG, ``dicom``), so
neither imports the other to refuse a file."""

from __future__ import annotations

from http import HTTPStatus

import numpy as np

# A film shows something (see ``refuse_blank``): grey levels of its 8-bit rendition.
MIN_GREY_LEVELS = 16
MIN_SPREAD = 16
SPREAD_PERCENTILES = (0.01, 0.99)


class FileRejected(Exception):
    """A file that cannot be accepted; ``code`` is stable, ``message`` is for people."""

    def __init__(self, code: str, message: str, status: int = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def refuse_blank(pixels: np.ndarray) -> None:
    """Refuse an 8-bit rendition with nothing on it: it must never be shown as a film or
    get a (reassuring) score.

    The rule, on the grey levels a reader would see (0-255): the image must show at least
    ``MIN_GREY_LEVELS`` (16) different levels, and the middle 98% of its pixels (1st to 99th
    percentile) must span at least ``MIN_SPREAD`` (16) levels, about 6% of the range.
    Percentiles, not the minimum and maximum, so that a blank film with a burned-in label
    or a few hot pixels is still blank; a breast covers far more than 1% of any
    mammogram. Real films are nowhere near the line: the 258 mini-MIAS films span at least
    163 levels and show at least 198, synthetic films (``ml.synthetic``, any size from 32
    rows) at least 137 and 74; a constant image spans 0 and shows 1.
    """
    counts = np.bincount(np.asarray(pixels, np.uint8).ravel(), minlength=256)
    levels = int(np.count_nonzero(counts))
    if levels == 1:
        raise FileRejected(
            "blank_image",
            "Image is blank: every pixel shows the same grey level, so there is nothing to "
            "read or score.",
        )
    if levels < MIN_GREY_LEVELS:
        raise FileRejected(
            "blank_image",
            f"Image shows only {levels} grey levels (a film shows at least "
            f"{MIN_GREY_LEVELS}), so there is nothing to read or score.",
        )
    cumulative = np.cumsum(counts) / counts.sum()
    low, high = (int(np.searchsorted(cumulative, q)) for q in SPREAD_PERCENTILES)
    if high - low < MIN_SPREAD:
        raise FileRejected(
            "blank_image",
            f"Image is almost blank: 98% of its pixels lie within {high - low} grey levels "
            f"(a film spans at least {MIN_SPREAD}), so there is nothing to read or score.",
        )
