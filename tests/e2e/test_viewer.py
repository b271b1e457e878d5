"""In headless Chromium without a GPU: the Cornerstone3D viewer on a four-view DICOM screen
with a prior (issue 14). Checked on what is painted, not only on the HTML sent."""

from __future__ import annotations

import io
import os
import re
import time

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from screening.choices import CaseStatus, Decision
from screening.models import AIResult, Read
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_reading_flow import choose, log_in
from tests.e2e.test_robust_csp import RECORD_VIOLATIONS
from tests.factories import (
    ModelVersionFactory,
    UserFactory,
    case_with_images,
    dicom_screen,
    score_case,
    unvalidated_evidence,
)
from tests.screening.ai.test_ai_evidence import MARKS, scored_evidence

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
DOCS = ARTIFACTS.parent / "docs"
SHOTS = DOCS if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1" else ARTIFACTS
SPACING_MM = 0.2  # tests.dicom_files writes PixelSpacing 0.2 \ 0.2


def screen_with_prior():
    dicom_screen(study_date="20220310", seed=400, status=CaseStatus.CLOSED)
    current = dicom_screen(study_date="20240315", seed=300)
    score_case(current, 0.9, ModelVersionFactory(is_active=True, evidence=scored_evidence()))
    AIResult.objects.filter(case=current, image__isnull=False).update(marks=MARKS)
    return current


def open_viewer(page, live_server, case) -> None:
    page.goto(f"{live_server.url}/cases/{case.pk}/")
    wait_until(page, "() => document.getElementById('viewer').dataset.ready === '1'")


def wait_until(page, predicate: str, arg=None, seconds: float = 30) -> None:
    """Poll a JS function from the test: page.wait_for_function evaluates strings inside
    the page, which its CSP (no unsafe-eval) rightly refuses."""
    deadline = time.monotonic() + seconds
    while not page.evaluate(predicate, arg):
        assert time.monotonic() < deadline, predicate
        page.wait_for_timeout(100)


def box(page, selector: str) -> dict:
    found = page.locator(selector).bounding_box()
    assert found, selector
    return found


def centre(b: dict) -> tuple[float, float]:
    return b["x"] + b["width"] / 2, b["y"] + b["height"] / 2


def assert_back_to_back(page, slots=("RCC", "LCC", "RMLO", "LMLO"), seconds: float = 10) -> None:
    """The right film's chest wall against its viewport's right edge, the left film's against
    its left edge, so the two meet in the middle. Polled: a new layout hangs the films on
    the viewer's next frames, which a loaded machine paints late."""
    deadline = time.monotonic() + seconds
    while (misplaced := off_the_middle(page, slots)) and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert misplaced == {}


def off_the_middle(page, slots) -> dict[str, float]:
    """Each film whose chest wall is more than 2 px from its viewport's middle-facing edge."""
    gaps = {}
    for slot in slots:
        film = box(page, f'.panel.current[data-slot="{slot}"] .layers')
        viewport = box(page, f'.panel.current[data-slot="{slot}"] .viewport')
        if slot.startswith("R"):
            gap = film["x"] + film["width"] - (viewport["x"] + viewport["width"])
        else:
            gap = film["x"] - viewport["x"]
        if abs(gap) > 2:
            gaps[slot] = gap
    return gaps


@pytest.fixture
def reader_on_screen(live_server, browser_page):
    UserFactory(username="reader", role="radiologist")
    case = screen_with_prior()
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_init_script(RECORD_VIOLATIONS)
    log_in(page, live_server, "reader")
    open_viewer(page, live_server, case)
    yield page, case
    assert errors == []
    if not page.is_closed() and page.evaluate("typeof window.__csp") != "undefined":
        assert page.evaluate("window.__csp") == []  # W/L, tools, workers, all under the CSP


def test_the_four_views_hang_1x4_in_the_sites_order_with_labels(reader_on_screen):
    """The default protocol (issue 24): RMLO LMLO RCC LCC in one row, back to back; each
    protocol is measured in tests/e2e/test_hanging_protocols.py."""
    page, _ = reader_on_screen
    order = page.eval_on_selector_all(
        ".panel.current:not([hidden])",
        "ps => ps.map(p => [p.getBoundingClientRect().left, p.getBoundingClientRect().top,"
        " p.dataset.slot, p.dataset.loaded])",
    )
    assert [(slot, loaded) for _, _, slot, loaded in sorted(order)] == [
        ("RMLO", "1"), ("LMLO", "1"), ("RCC", "1"), ("LCC", "1"),
    ]  # fmt: skip
    assert len({top for _, top, _, _ in order}) == 1  # one row
    assert_back_to_back(page)
    labels = page.eval_on_selector_all(
        ".panel.current:not([hidden]) .vp-label", "ls => ls.map(l => l.textContent)"
    )
    assert sorted(labels) == ["L CC", "L MLO", "R CC", "R MLO"]
    assert "Current · 2024-03-15" in page.inner_text('.panel.current[data-slot="RCC"] .vp-date')
    # Each viewport has its own canvas (data-loaded "1" above: its film was rendered).
    assert page.eval_on_selector_all(".panel.current canvas", "cs => cs.length") >= 4
    page.screenshot(path=str(ARTIFACTS / "viewer-1-hanging.png"))

    page.keyboard.press("l")
    assert page.inner_text("#layout-name") == "CC pair"
    visible = page.eval_on_selector_all(
        ".panel.current:not([hidden])", "ps => ps.map(p => p.dataset.slot)"
    )
    assert visible == ["RCC", "LCC"]
    for name, slots in (
        ("MLO pair", ["RMLO", "LMLO"]),
        ("Current and prior: R MLO", None),
        ("Single film: R MLO", ["RMLO"]),
        ("1×4", None),
    ):
        page.keyboard.press("l")
        assert page.inner_text("#layout-name") == name
        if slots:
            assert (
                page.eval_on_selector_all(
                    ".panel.current:not([hidden])", "ps => ps.map(p => p.dataset.slot)"
                )
                == slots
            )
    assert_back_to_back(page)  # a new protocol hangs the films again
    page.keyboard.press("r")
    assert_back_to_back(page)  # and so does a reset


def test_dragging_changes_window_level_on_the_painted_pixels(reader_on_screen):
    page, _ = reader_on_screen
    film = '.panel.current[data-slot="RCC"] .viewport'
    before = page.locator(film).screenshot()
    voi = page.get_attribute('.panel.current[data-slot="RCC"]', "data-voi")
    x, y = centre(box(page, film))
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 120, y + 80, steps=8)
    page.mouse.up()
    wait_until(
        page,
        "v => document.querySelector('.panel.current[data-slot=\"RCC\"]').dataset.voi !== v",
        voi,
    )
    assert page.locator(film).screenshot() != before


SLOTS = ("RCC", "LCC", "RMLO", "LMLO")


def windows(page) -> dict[str, tuple[float, float]]:
    """Each current film's painted window (data-voi, set on every render) as centre and width
    relative to its own reference window (the one it was first shown with)."""
    found = {}
    for slot in SLOTS:
        panel = page.locator(f'.panel.current[data-slot="{slot}"]')
        lower, upper = map(float, panel.get_attribute("data-voi").split(","))
        low, high = map(float, panel.get_attribute("data-reference").split(","))
        width = high - low
        found[slot] = (((lower + upper) / 2 - (low + high) / 2) / width, (upper - lower) / width)
    return found


def drag_window(page, slot: str) -> None:
    x, y = centre(box(page, f'.panel.current[data-slot="{slot}"] .viewport'))
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 120, y + 80, steps=8)
    page.mouse.up()


def to_16_bits(image) -> None:
    """The 12-bit film stored again as 16-bit, its window scaled with it: one film of the
    screen with another bit depth and other presets (as a mixed-vendor study can have)."""
    with image.file.open("rb") as handle:
        ds = pydicom.dcmread(io.BytesIO(handle.read()))
    ds.PixelData = (ds.pixel_array.astype("uint16") << 4).tobytes()
    ds.BitsStored, ds.HighBit = 16, 15
    ds.WindowCenter, ds.WindowWidth = float(ds.WindowCenter) * 16, float(ds.WindowWidth) * 16
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    image.file.save("image.dcm", io.BytesIO(buffer.getvalue()))


def test_window_level_is_linked_across_the_four_views_relative_to_each_film(
    live_server, browser_page
):
    """Issue 24: linked by default; a drag on one film windows all four alike, each relative
    to its own window: the 16-bit LCC moves sixteen times as far as the 12-bit films."""
    UserFactory(username="reader", role="radiologist")
    case = dicom_screen(seed=300)
    to_16_bits(case.studies.get().images.get(laterality="L", view="CC"))
    page = browser_page
    log_in(page, live_server, "reader")
    open_viewer(page, live_server, case)
    assert page.get_attribute("#link-wl", "aria-pressed") == "true"
    reference = {
        slot: page.get_attribute(f'.panel.current[data-slot="{slot}"]', "data-reference")
        for slot in SLOTS
    }
    assert reference["LCC"] != reference["RCC"]  # the films' own windows differ
    before = {
        slot: page.locator(f'.panel.current[data-slot="{slot}"] .viewport').screenshot()
        for slot in SLOTS
    }
    assert all(
        shift == pytest.approx(0, abs=0.01) and scale == pytest.approx(1, abs=0.01)
        for shift, scale in windows(page).values()
    )
    drag_window(page, "RCC")
    wait_until(
        page,
        "() => [...document.querySelectorAll('.panel.current')]"
        ".every(p => p.dataset.voi !== p.dataset.reference)",
    )
    page.wait_for_timeout(300)
    moved = windows(page)
    shift, scale = moved["RCC"]
    assert abs(shift) > 0.01 or abs(scale - 1) > 0.01
    for slot in SLOTS:
        assert moved[slot] == pytest.approx((shift, scale), abs=0.01), (slot, moved, reference)
        assert (
            page.locator(f'.panel.current[data-slot="{slot}"] .viewport').screenshot()
            != before[slot]
        )
    # painted alike: the 16-bit film looks as its 12-bit partner would through the same window
    rcc = grey_mean(page.locator('.panel.current[data-slot="RCC"] .viewport').screenshot())
    lcc = grey_mean(page.locator('.panel.current[data-slot="LCC"] .viewport').screenshot())
    assert abs(rcc - lcc) < 15, (rcc, lcc)


def test_unlinked_window_level_changes_only_the_film_dragged(reader_on_screen):
    page, _ = reader_on_screen
    page.click("#link-wl")
    assert page.get_attribute("#link-wl", "aria-pressed") == "false"
    drag_window(page, "LCC")
    wait_until(
        page,
        "() => { const p = document.querySelector('.panel.current[data-slot=\"LCC\"]');"
        " return p.dataset.voi !== p.dataset.reference; }",
    )
    page.wait_for_timeout(300)
    for slot in ("RCC", "RMLO", "LMLO"):
        panel = f'.panel.current[data-slot="{slot}"]'
        assert page.get_attribute(panel, "data-voi") == page.get_attribute(panel, "data-reference")


def test_invert_shows_its_state_on_the_button_and_each_film(reader_on_screen):
    page, _ = reader_on_screen
    labels = ".panel.current:not([hidden]) .vp-inverted"
    assert page.get_attribute("#invert", "aria-pressed") == "false"
    assert page.locator(labels).count() == 4 and not any(
        label.is_visible() for label in page.locator(labels).all()
    )
    before = page.locator('.panel.current[data-slot="RCC"] .viewport').screenshot()
    page.keyboard.press("i")
    assert page.get_attribute("#invert", "aria-pressed") == "true"
    assert all(
        label.is_visible() and label.inner_text() == "Inverted"
        for label in page.locator(labels).all()
    )
    page.wait_for_timeout(300)
    assert page.locator('.panel.current[data-slot="RCC"] .viewport').screenshot() != before
    page.click("#invert")
    assert page.get_attribute("#invert", "aria-pressed") == "false"
    assert not any(label.is_visible() for label in page.locator(labels).all())


def test_no_overlay_controls_when_the_versions_evidence_lets_nothing_be_drawn(
    live_server, browser_page
):
    """Issue 24: the shipped-like version (heatmap and marks failing their gates) has
    heatmaps and marks stored, but none may be shown: no checkbox, no slider, H does nothing."""
    UserFactory(username="reader", role="radiologist")
    case = dicom_screen(seed=300)
    score_case(case, 0.9, ModelVersionFactory(is_active=True, evidence=unvalidated_evidence()))
    AIResult.objects.filter(case=case, image__isnull=False).update(marks=MARKS)
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, live_server, "reader")
    open_viewer(page, live_server, case)
    assert page.locator(".panel.current .layers img.heatmap, .panel.current svg.marks").count() == 0
    for control in ("#overlay-controls", "#overlay-toggle", "#overlay-opacity", "#heat-legend"):
        assert not page.is_visible(control), control
    page.keyboard.press("h")
    assert page.is_checked("#overlay-toggle") and not page.is_visible("#overlay-toggle")
    assert errors == []


def test_the_prior_hangs_beside_the_current_with_its_date(reader_on_screen):
    page, _ = reader_on_screen
    assert "2022-03-10" in page.inner_text("#priors")
    assert page.locator(".panel.prior:not([hidden])").count() == 0
    page.keyboard.press("c")
    wait_until(
        page,
        "() => document.querySelector('.panel.prior[data-slot=\"RMLO\"]').dataset.loaded === '1'",
    )
    current, prior = (
        box(page, '.panel.current[data-slot="RMLO"]'),
        box(page, '.panel.prior[data-slot="RMLO"]'),
    )
    assert prior["y"] == current["y"] and prior["x"] > current["x"]
    assert prior["x"] - (current["x"] + current["width"]) < 10  # directly beside
    assert "Prior · 2022-03-10" in page.inner_text('.panel.prior[data-slot="RMLO"] .vp-date')
    page.screenshot(path=str(ARTIFACTS / "viewer-2-prior.png"))


def test_h_toggles_the_heatmap_and_marks_drawn_on_the_film(reader_on_screen):
    page, _ = reader_on_screen
    heatmap = '.panel.current[data-slot="RCC"] img.heatmap'
    assert page.is_visible(heatmap) and page.is_visible("#heat-legend")
    assert page.is_visible("#overlay-toggle") and page.is_visible("#overlay-opacity")
    film = box(page, '.panel.current[data-slot="RCC"] .layers')
    assert film["width"] > 50 and box(page, heatmap) == film
    mark = page.locator('.panel.current[data-slot="RCC"] svg.marks circle').first.bounding_box()
    assert mark
    x, y = centre(mark)
    assert (
        film["x"] <= x <= film["x"] + film["width"] and film["y"] <= y <= film["y"] + film["height"]
    )
    page.keyboard.press("h")
    assert not page.is_visible(heatmap) and not page.is_visible(
        '.panel.current[data-slot="RCC"] svg.marks'
    )
    page.keyboard.press("h")
    assert page.is_visible(heatmap)


def test_a_length_measurement_reads_millimetres_from_the_pixel_spacing(reader_on_screen):
    page, _ = reader_on_screen
    page.keyboard.press("m")
    panel = '.panel.current[data-slot="RCC"]'
    start = page.evaluate(f"window.mammoViewer.imageToPage('{panel}', 100, 100)")
    end = page.evaluate(f"window.mammoViewer.imageToPage('{panel}', 100, 300)")
    page.mouse.move(start["x"], start["y"])
    page.mouse.down()
    page.mouse.move(end["x"], end["y"], steps=10)
    page.mouse.up()
    wait_until(page, "p => document.querySelector(`${p} svg text`) !== null", panel)
    page.wait_for_timeout(500)  # the tool works its statistics out at most every 100 ms
    text = page.inner_text(f"{panel} .viewport")
    found = re.search(r"([0-9.]+)\s*mm", text)
    assert found, text
    assert float(found.group(1)) == pytest.approx(200 * SPACING_MM, abs=0.3)
    page.screenshot(path=str(SHOTS / "viewer-3-measure.png"))


def test_accept_ai_still_records_the_read_from_the_keyboard(reader_on_screen):
    page, case = reader_on_screen
    choose(page, "4", "1", "b", finding_R="mass", site_R="10")
    with page.expect_navigation():
        page.keyboard.press("a")
    read = Read.objects.get(case=case)
    assert read.decision == Decision.RECALL and read.agrees_with_ai is True


def test_the_probe_reads_the_stored_pixel_value(reader_on_screen):
    page, _ = reader_on_screen
    page.keyboard.press("v")
    panel = '.panel.current[data-slot="RCC"]'
    page.mouse.click(*centre(box(page, f"{panel} .viewport")))  # on the film, which fills it
    wait_until(
        page, "p => /\\d/.test(document.querySelector(`${p} .viewport svg`).textContent)", panel
    )


def test_png_films_are_painted_as_they_are(live_server, browser_page):
    UserFactory(username="reader", role="radiologist")
    case = case_with_images(images=2, score=0.9)
    log_in(browser_page, live_server, "reader")
    open_viewer(browser_page, live_server, case)
    panels = browser_page.eval_on_selector_all(
        ".panel.current", "ps => ps.map(p => [p.dataset.kind, p.dataset.loaded, p.dataset.voi])"
    )
    assert panels == [["web", "1", "0,255"], ["web", "1", "0,255"]]


def recompress(image, syntax) -> None:
    with image.file.open("rb") as handle:
        ds = pydicom.dcmread(io.BytesIO(handle.read()))
    ds.compress(syntax, generate_instance_uid=False)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    image.file.save("image.dcm", io.BytesIO(buffer.getvalue()))


def test_jpeg_2000_and_jpeg_ls_films_decode_in_the_browser(live_server, browser_page):
    UserFactory(username="reader", role="radiologist")
    case = dicom_screen(size=256)
    films = {f"{i.laterality}{i.view}": i for i in case.studies.get().images.all()}
    recompress(films["RCC"], JPEG2000Lossless)
    recompress(films["LCC"], JPEGLSLossless)
    recompress(films["RMLO"], RLELossless)
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_init_script(RECORD_VIOLATIONS)
    log_in(page, live_server, "reader")
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url.rsplit("/", 1)[-1]))
    open_viewer(page, live_server, case)
    loaded = page.eval_on_selector_all(
        ".panel.current", "ps => ps.map(p => [p.dataset.slot, p.dataset.loaded])"
    )
    assert loaded == [["RCC", "1"], ["LCC", "1"], ["RMLO", "1"], ["LMLO", "1"]]
    assert {"openjpeg.wasm", "charls.wasm"} <= set(fetched)  # decoded by the worker's codecs
    assert errors == [] and page.evaluate("window.__csp") == []


def test_the_previews_are_painted_hung_until_the_full_films_replace_them(live_server, browser_page):
    """Issue 16: each film's preview is on screen before the viewer has a frame, its chest
    wall towards the middle as the full film will hang, and gone once the film is shown."""
    from PIL import Image as PILImage

    UserFactory(username="reader", role="radiologist")
    case = dicom_screen(seed=300)
    page = browser_page
    log_in(page, live_server, "reader")
    held: list = []
    page.route("**/frames/1", lambda route: held.append(route))  # no frame reaches it yet
    page.goto(f"{live_server.url}/cases/{case.pk}/")
    wait_until(page, "() => document.querySelectorAll('.panel.current img.preview').length === 4")
    wait_until(
        page,
        "() => [...document.querySelectorAll('.panel.current img.preview')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
    )
    assert page.eval_on_selector_all(".panel.current[data-loaded]", "ps => ps.length") == 0
    for slot in ("RCC", "LCC", "RMLO", "LMLO"):
        panel = f'.panel.current[data-slot="{slot}"]'
        assert page.locator(f"{panel} .vp-preview").is_visible()
        shot = PILImage.open(io.BytesIO(page.locator(f"{panel} .viewport").screenshot()))
        grey = shot.convert("L")
        half = grey.width // 2
        pixels = np.asarray(grey, dtype=np.int64)
        left, right = pixels[:, :half].sum(), pixels[:, half:].sum()
        assert (right > left) if slot.startswith("R") else (left > right), slot
    for route in held:
        route.continue_()
    page.unroute("**/frames/1")
    wait_until(page, "() => document.getElementById('viewer').dataset.ready === '1'")
    assert not page.locator('.panel.current[data-slot="RCC"] img.preview').is_visible()
    assert not page.locator('.panel.current[data-slot="RCC"] .vp-preview').is_visible()
    assert_back_to_back(page)


def grey_mean(shot: bytes) -> float:
    from PIL import Image as PILImage

    return float(np.asarray(PILImage.open(io.BytesIO(shot)).convert("L")).mean())


def grey_difference(shot: bytes, other: bytes) -> float:
    """The mean grey-level difference, pixel by pixel, between two shots of one viewport."""
    from PIL import Image as PILImage
    from PIL import ImageChops

    a, b = (PILImage.open(io.BytesIO(s)).convert("L") for s in (shot, other))
    return float(np.asarray(ImageChops.difference(a, b)).mean())


@pytest.mark.parametrize(
    ("voi", "photometric"),
    [("lut", "MONOCHROME2"), ("window", "MONOCHROME2"), ("lut", "MONOCHROME1")],
)
def test_the_full_film_shows_the_files_own_voi_as_the_rendition_does(
    live_server, browser_page, voi, photometric
):
    """A file's VOI LUT table (or window) is applied in the browser, MONOCHROME1 shown
    inverted: the full film, as first shown, looks as the server's rendition (the preview,
    what the AI scores) looks."""
    UserFactory(username="reader", role="radiologist")
    case = dicom_screen(seed=300, voi=voi, photometric=photometric)
    page = browser_page
    log_in(page, live_server, "reader")
    held: list = []
    page.route("**/frames/1", lambda route: held.append(route))
    page.goto(f"{live_server.url}/cases/{case.pk}/")
    viewport = page.locator('.panel.current[data-slot="RCC"] .viewport')
    wait_until(
        page,
        "() => [...document.querySelectorAll('.panel.current img.preview')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
    )
    preview = grey_mean(viewport.screenshot())
    for route in held:
        route.continue_()
    page.unroute("**/frames/1")
    wait_until(page, "() => document.getElementById('viewer').dataset.ready === '1'")
    shown = viewport.screenshot()
    full = grey_mean(shown)
    assert abs(full - preview) < 4, (voi, full, preview)
    if voi == "lut":  # a window from the list replaces the table; "as the file says" restores it
        page.select_option("#voi-preset", "full")
        page.wait_for_timeout(300)
        assert grey_difference(viewport.screenshot(), shown) > 4
        page.select_option("#voi-preset", "file")
        page.wait_for_timeout(300)
        assert abs(grey_mean(viewport.screenshot()) - preview) < 4
