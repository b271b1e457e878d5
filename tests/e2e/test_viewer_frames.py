"""In headless Chromium: films sent as JPEG-LS lossless frames (issue 24) decode in the
viewer's worker to exactly the stored pixels, and show as the native frames do."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from screening.imaging import lossless
from tests.e2e.test_reading_flow import log_in
from tests.e2e.test_robust_csp import RECORD_VIOLATIONS
from tests.e2e.test_viewer import open_viewer
from tests.factories import UserFactory, dicom_screen

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
SLOTS = ("RCC", "LCC", "RMLO", "LMLO")
FACTS = 's => window.mammoFrames.facts(`.panel.current[data-slot="${s}"]`)'
SHOWN = 's => document.querySelector(`.panel.current[data-slot="${s}"]`).dataset.voi'


def checksum(values: np.ndarray) -> int:
    """The page's checksum (viewer/src/frames.js): sum of value x ((index mod 65521) + 1),
    modulo 2^32."""
    flat = values.ravel().astype(np.uint64)
    weights = (np.arange(flat.size, dtype=np.uint64) % 65521) + 1
    return int((flat * weights).sum() % (1 << 32))


def stored_facts(image) -> dict:
    with image.file.open("rb") as handle:
        values = pydicom.dcmread(io.BytesIO(handle.read())).pixel_array
    return {
        "rows": values.shape[0],
        "columns": values.shape[1],
        "min": int(values.min()),
        "max": int(values.max()),
        "checksum": checksum(values),
    }


def seen(page) -> dict[str, dict]:
    return {
        slot: page.evaluate(FACTS, slot) | {"voi": page.evaluate(SHOWN, slot)} for slot in SLOTS
    }


def test_lossless_frames_show_exactly_the_pixels_of_the_native_path(
    live_server, browser_page, settings
):
    settings.DICOMWEB_LOSSLESS_FRAMES = True
    UserFactory(username="reader", role="radiologist")
    case = dicom_screen(size=512, bits=16)
    films = {f"{i.laterality}{i.view}": i for i in case.studies.get().images.all()}
    lossless.warm(films.values())  # as an upload does
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_init_script(RECORD_VIOLATIONS)
    log_in(page, live_server, "reader")
    open_viewer(page, live_server, case)
    compressed = seen(page)

    settings.DICOMWEB_LOSSLESS_FRAMES = False
    open_viewer(page, live_server, case)
    native = seen(page)

    for slot in SLOTS:
        assert compressed[slot]["syntax"] == JPEG_LS_LOSSLESS, slot
        assert native[slot]["syntax"] == EXPLICIT_LITTLE, slot
        file = stored_facts(films[slot])
        for key, value in file.items():  # decoded in the worker to the file's own values
            assert compressed[slot][key] == value, (slot, key)
        shown = {k: v for k, v in compressed[slot].items() if k != "syntax"}
        assert shown == {k: v for k, v in native[slot].items() if k != "syntax"}, slot
    assert errors == [] and page.evaluate("window.__csp") == []
