"""End to end in headless Chromium: the reading room as radiologists use it.

Each test drives the real page (Django's live server, the real login page, case.js and
live.js) and checks both what the page shows and what was stored as a ``Read``. The
script on the page only ever reads and explains the reader's choices; it never sets one.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image as PILImage

from screening.choices import CaseStatus, Decision, ReadKind
from screening.models import Case, Read, ReaderSettings
from tests.e2e.conftest import ARTIFACTS
from tests.factories import UserFactory, case_with_images, score_case

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# README screenshots go to docs/ only when asked (UPDATE_DOCS_SCREENSHOTS=1), so a test
# run never changes tracked files; otherwise to test-artifacts/ with the others.
DOCS = Path(__file__).resolve().parents[2] / "docs"
SHOTS = DOCS if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1" else ARTIFACTS
PASSWORD = "correct-horse-battery"
VIEWPORT = {"width": 1600, "height": 1000}


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/worklist/")


def open_case(page, live_server, case: Case) -> None:
    page.goto(f"{live_server.url}/cases/{case.pk}/")
    page.wait_for_selector("#read-form, #my-read, #arbitration-note")


def reader_page(browser_page, live_server, username: str):
    """A separate browser context (own cookies) for one more signed-in user."""
    context = browser_page.context.browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    log_in(page, live_server, username)
    return page


def show_ai_evidence(page) -> None:
    """Unfold the AI's evidence, as a reader does who wants more than its one line."""
    page.click("#ai-details > summary")
    page.wait_for_selector("#ai-details[open]")


def choose(page, right: str, left: str, density: str, **finding: str) -> None:
    """Fill the read as a reader does; ``finding`` as finding_R="mass", site_R="10"."""
    page.select_option("#id_birads_right", right)
    page.select_option("#id_birads_left", left)
    for name, value in finding.items():
        page.select_option(f"#id_{name}", value)
    page.check(f"input[name=density][value={density}]")


def form_values(page) -> dict:
    return page.evaluate(
        """() => ({
            right: document.getElementById('id_birads_right').value,
            left: document.getElementById('id_birads_left').value,
            finding_R: document.getElementById('id_finding_R').value,
            site_R: document.getElementById('id_site_R').value,
            finding_L: document.getElementById('id_finding_L').value,
            density: (document.querySelector('input[name=density]:checked') || {}).value || '',
        })"""
    )


def read_posts(page) -> list[str]:
    """Every read the page sends, recorded as it goes (not the drafts it keeps as the
    reader types: ``test_read_kept.py``)."""
    sent: list[str] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request.url)
            if request.method == "POST" and not request.url.endswith("/draft/")
            else None
        ),
    )
    return sent


def sidebar(page) -> str:
    return page.inner_text("aside.sidebar")


def save_doc(page, name: str, top: str = "") -> None:
    """A README screenshot, <name>.png (see SHOTS): the viewport, with the sidebar scrolled to put
    ``top`` at its top (or to its end), in 256 colours (dithered) to keep the file small."""
    page.wait_for_load_state("networkidle")
    page.eval_on_selector(
        "aside.sidebar",
        """(bar, top) => {
            const el = top && document.querySelector(top);
            bar.scrollTop = el
                ? el.getBoundingClientRect().top - bar.getBoundingClientRect().top + bar.scrollTop - 8
                : bar.scrollHeight;
        }""",
        top,
    )
    shot = PILImage.open(io.BytesIO(page.screenshot())).convert("RGB")
    palette = shot.quantize(colors=256)
    shot = shot.quantize(palette=palette, dither=PILImage.Dither.FLOYDSTEINBERG)
    SHOTS.mkdir(exist_ok=True)
    shot.save(SHOTS / f"{name}.png", optimize=True)


def findings_of(read: Read) -> list[tuple[str, str, str, str]]:
    return [(f.breast, f.finding, f.site, f.depth) for f in read.findings.all()]


def test_categories_that_mean_recall_are_never_stored_as_no_recall(live_server, browser_page):
    """The past bug: Confirm "no recall" with right BI-RADS 4 rewrote the category to 1 and
    stored no recall. Now nothing is sent, the categories stay exactly as chosen, and the
    reader's Accept AI stores exactly what was entered."""
    UserFactory(username="reader", role="radiologist")
    case = case_with_images(images=4, score=0.93, is_synthetic=True)
    page = browser_page
    log_in(page, live_server, "reader")
    open_case(page, live_server, case)
    posts = read_posts(page)
    page.evaluate("window.__marker = 1")

    page.keyboard.press("o")
    assert page.is_visible("#confirm-override")
    page.fill("#id_reason", "Spiculated mass at 10 o'clock on both views")
    choose(page, "4", "1", "b", finding_R="mass", site_R="10", depth_R="middle")
    page.click("#confirm-override")

    summary = page.locator("#read-summary")
    assert "mean recall" in summary.inner_text()
    assert "Nothing was sent" in summary.inner_text()
    assert "error" in summary.get_attribute("class")
    page.wait_for_timeout(300)  # a submit, had one started, would have left by now
    assert posts == []
    assert Read.objects.count() == 0
    assert page.evaluate("window.__marker") == 1  # same page: no navigation
    assert form_values(page) == {
        "right": "4", "left": "1", "finding_R": "mass", "site_R": "10",
        "finding_L": "", "density": "b",
    }  # fmt: skip

    with page.expect_navigation():
        page.click("#accept-ai")
    assert page.is_visible("#my-read")
    read = Read.objects.get(case=case)
    assert (read.kind, read.decision, read.birads_right, read.birads_left) == (
        ReadKind.FIRST, Decision.RECALL, 4, 1,
    )  # fmt: skip
    assert (read.birads, read.density, read.agrees_with_ai) == (4, "b", True)
    assert findings_of(read) == [("R", "mass", "10", "middle")]
    assert read.reason == "Spiculated mass at 10 o'clock on both views"
    shown = page.text_content("#my-read")
    assert "Recall" in shown and "BI-RADS R 4, L 1" in shown and "density b" in shown
    assert "Mass, right 10 o'clock" in shown
    assert len(posts) == 1


def test_accept_with_nothing_chosen_records_nothing_and_says_what_is_missing(
    live_server, browser_page
):
    UserFactory(username="reader", role="radiologist")
    case = case_with_images(images=2, score=0.2)
    page = browser_page
    log_in(page, live_server, "reader")
    open_case(page, live_server, case)
    posts = read_posts(page)

    page.keyboard.press("a")
    summary = page.inner_text("#read-summary")
    assert "Still to choose" in summary and "Nothing was sent" in summary
    for missing in ("BI-RADS right", "BI-RADS left", "density"):
        assert missing in summary, summary
    assert page.evaluate("document.activeElement.id") == "id_birads_right"
    page.click("#accept-ai")  # the button too
    page.wait_for_timeout(300)
    assert posts == [] and Read.objects.count() == 0
    assert form_values(page) == {
        "right": "", "left": "", "finding_R": "", "site_R": "", "finding_L": "", "density": "",
    }  # fmt: skip

    # A category that needs a finding: the page names the finding and its site, still
    # choosing nothing itself.
    page.select_option("#id_birads_left", "5")
    page.select_option("#id_birads_right", "2")
    page.check("#id_density_2")
    page.keyboard.press("a")
    summary = page.inner_text("#read-summary")
    assert "the finding in the left breast (BI-RADS 5)" in summary, summary
    page.select_option("#id_finding_L", "calcification")
    page.click("#accept-ai")
    assert "the site of the left finding" in page.inner_text("#read-summary")
    page.wait_for_timeout(300)
    assert posts == [] and Read.objects.count() == 0
    assert form_values(page)["left"] == "5" and form_values(page)["right"] == "2"


def test_shortcuts_work_from_a_select_and_never_while_typing(live_server, browser_page):
    UserFactory(username="reader", role="radiologist")
    case = case_with_images(images=2, score=0.93)
    page = browser_page
    log_in(page, live_server, "reader")
    open_case(page, live_server, case)
    posts = read_posts(page)
    active = "document.activeElement.id"

    page.focus("#id_birads_right")
    page.keyboard.press("4")  # type-ahead in the focused select chooses "4 — Suspicious"
    assert page.evaluate(active) == "id_birads_right"
    assert page.input_value("#id_birads_right") == "4"
    assert not page.is_visible("#override-panel")
    page.keyboard.press("o")
    assert page.is_visible("#override-panel") and page.is_visible("#confirm-override")
    assert page.evaluate(active) == "id_reason"
    assert page.input_value("#id_birads_right") == "4"

    page.focus("#id_birads_left")
    page.keyboard.press("1")
    assert page.evaluate(active) == "id_birads_left"
    assert page.is_checked("#overlay-toggle")
    page.keyboard.press("h")
    assert not page.is_checked("#overlay-toggle")
    hidden = page.eval_on_selector_all(".panel img.heatmap", "hs => hs.map(h => h.style.display)")
    assert hidden == ["none", "none"]
    page.keyboard.press("h")
    assert page.is_checked("#overlay-toggle")
    assert page.input_value("#id_birads_left") == "1"

    page.focus("#id_reason")
    page.keyboard.type("a benign-looking area")
    page.wait_for_timeout(300)
    assert page.input_value("#id_reason") == "a benign-looking area"
    assert page.is_checked("#overlay-toggle")  # the "h" in the text toggled nothing
    assert posts == [] and Read.objects.count() == 0
    assert (page.input_value("#id_birads_right"), page.input_value("#id_birads_left")) == ("4", "1")


def test_the_ai_arriving_keeps_the_readers_zoom_and_choices(live_server, browser_page):
    UserFactory(username="reader", role="radiologist")
    case = case_with_images(images=2, status=CaseStatus.AWAITING_AI)
    page = browser_page
    log_in(page, live_server, "reader")
    open_case(page, live_server, case)
    assert page.is_visible("#record-read") and page.locator("#accept-ai").count() == 0
    assert "Awaiting AI" in page.inner_text("#ai-box")
    assert not page.is_visible("#overlay-toggle")  # nothing to draw yet
    page.evaluate("window.__marker = 1")

    page.wait_for_selector('#viewer[data-ready="1"]', state="attached")
    panel = ".panel.current"
    page.hover(f"{panel} .viewport")
    page.mouse.wheel(0, -300)
    page.wait_for_timeout(300)
    zoom = page.eval_on_selector(panel, "p => p.dataset.zoom")  # the viewer's camera zoom
    assert float(zoom) > 1, zoom
    choose(page, "2", "1", "c")
    page.fill("#id_reason", "Benign calcifications, stable")

    score_case(case, 0.93)
    page.wait_for_selector("#accept-ai", timeout=10_000)

    assert page.evaluate("window.__marker") == 1  # not reloaded
    assert page.eval_on_selector(panel, "p => p.dataset.zoom") == zoom
    assert form_values(page)["right"] == "2" and form_values(page)["left"] == "1"
    assert form_values(page)["density"] == "c"
    assert page.input_value("#id_reason") == "Benign calcifications, stable"
    assert "0.93" in page.inner_text("#ai-box")
    assert page.locator(".panel img.heatmap").count() == 2
    assert page.is_visible("#overlay-toggle") and page.is_visible("#overlay-opacity")
    assert "Differs from the AI" in page.inner_text("#read-summary")

    page.click("#override-ai")  # the focus is still in the reason: "o" would type there
    with page.expect_navigation():
        page.click("#confirm-override")
    read = Read.objects.get(case=case)
    assert (read.decision, read.birads_right, read.birads_left, read.density) == (
        Decision.NO_RECALL, 2, 1, "c",
    )  # fmt: skip
    assert read.agrees_with_ai is False and read.ai_result_id == Case.objects.get().ai_result_id
    assert read.reason == "Benign calcifications, stable"


def test_after_reading_the_reader_sees_their_read_and_j_opens_the_next_case(
    live_server, browser_page
):
    """For a reader who chose to stay on the case after a read (by default the next case
    opens at once: ``test_station_keys.py``)."""
    reader = UserFactory(username="reader", role="radiologist")
    ReaderSettings.objects.create(user=reader, open_next_after_read=False)
    case = case_with_images(images=2, score=0.2)
    following = case_with_images(images=2, score=0.6)
    page = browser_page
    log_in(page, live_server, "reader")
    open_case(page, live_server, case)

    choose(page, "1", "2", "a")
    assert "Agrees with the AI" in page.inner_text("#read-summary")
    with page.expect_navigation():
        page.keyboard.press("a")
    page.wait_for_url(f"{live_server.url}/cases/{case.pk}/")
    read = Read.objects.get(case=case)
    assert (read.decision, read.birads_right, read.birads_left, read.density) == (
        Decision.NO_RECALL, 1, 2, "a",
    )  # fmt: skip
    mine = page.text_content("#my-read")
    assert "You read this case" in mine
    assert "No recall" in mine and "BI-RADS R 1, L 2" in mine
    assert "Read recorded" in page.inner_text(".messages")
    assert page.locator("#read-form").count() == 0
    assert page.get_attribute("#next-case", "href") == f"/cases/{following.pk}/"

    page.keyboard.press("j")
    page.wait_for_url(f"{live_server.url}/cases/{following.pk}/")
    assert page.is_visible("#read-form") and page.locator("#my-read").count() == 0


def test_double_reading_with_arbitration_walkthrough(live_server, browser_page):
    """First read, blind second read, disagreement, arbitration, closed; screenshots for
    the README in docs/."""
    for name in ("dr_ahmed", "dr_baker", "dr_chen"):
        UserFactory(username=name, role="radiologist")
    case = case_with_images(images=4, score=0.93, is_synthetic=True)
    ahmed = browser_page
    log_in(ahmed, live_server, "dr_ahmed")

    # First read (Dr Ahmed): recall, agreeing with the AI.
    open_case(ahmed, live_server, case)
    assert "First read" in ahmed.text_content("#read-form h2")
    choose(ahmed, "4", "1", "b", finding_R="mass", site_R="10", depth_R="middle")
    ahmed.fill("#id_reason", "Spiculated mass, right 10 o'clock")
    save_doc(ahmed, "reading-1-first-read")
    with ahmed.expect_navigation():
        ahmed.click("#accept-ai")
    first = Read.objects.get(case=case)
    assert (first.kind, first.decision, first.reader.username) == (
        ReadKind.FIRST, Decision.RECALL, "dr_ahmed",
    )  # fmt: skip
    assert Case.objects.get().status == CaseStatus.FIRST_READ_DONE

    # Second read (Dr Baker), blind: nothing of the first read shows.
    baker = reader_page(browser_page, live_server, "dr_baker")
    open_case(baker, live_server, case)
    side = sidebar(baker)
    assert baker.text_content("#read-form h2") == "Second read"
    assert "dr_ahmed" not in baker.content()
    for trace in ("Recall", "BI-RADS R 4", "Mass, right", "Spiculated", "You read this case"):
        assert trace not in side, trace
    assert baker.locator("#reads, #my-read").count() == 0
    assert "Blind: you do not see the first read" in baker.text_content("#read-form")
    choose(baker, "1", "1", "b")
    baker.keyboard.press("o")
    baker.keyboard.type("Summation of normal tissue; no mass on the MLO view")
    save_doc(baker, "reading-2-second-read-blind", top="#read-form")
    with baker.expect_navigation():
        baker.click("#confirm-override")
    second = Read.objects.get(case=case, kind=ReadKind.SECOND)
    assert (second.decision, second.agrees_with_ai) == (Decision.NO_RECALL, False)
    assert Case.objects.get().status == CaseStatus.ARBITRATION

    # Disagreement: both readers see the arbitration note, not the form, and still only
    # their own read.
    ahmed.reload()
    for page, other in ((ahmed, "dr_baker"), (baker, "dr_ahmed")):
        assert page.is_visible("#arbitration-note")
        assert "disagree" in page.inner_text("#arbitration-note")
        assert page.locator("#read-form").count() == 0
        assert page.is_visible("#my-read")
        assert other not in page.content()

    # Arbitration (Dr Chen) sees both reads and decides.
    chen = reader_page(browser_page, live_server, "dr_chen")
    open_case(chen, live_server, case)
    reads = chen.inner_text("#reads")
    assert "dr_ahmed" in reads and "dr_baker" in reads
    assert "Recall" in reads and "No recall" in reads
    choose(chen, "4", "2", "b", finding_R="mass", site_R="10")
    chen.fill("#id_reason", "Mass persists on spot compression review")
    save_doc(chen, "reading-3-arbitration", top="#reads-heading")
    with chen.expect_navigation():
        chen.click("#accept-ai")
    closed = Case.objects.get()
    assert (closed.status, closed.final_decision) == (CaseStatus.CLOSED, Decision.RECALL)
    arbitration = Read.objects.get(case=case, kind=ReadKind.ARBITRATION)
    assert (arbitration.reader.username, arbitration.birads_left) == ("dr_chen", 2)

    # Closed: every reader sees the final decision and all three reads.
    for page in (ahmed, baker, chen):
        page.reload()
        assert "final decision Recall" in page.inner_text("aside.sidebar")
        reads = page.inner_text("#reads")
        for name in ("dr_ahmed", "dr_baker", "dr_chen"):
            assert name in reads, (name, reads)
        assert page.locator("#read-form, #arbitration-note").count() == 0
    save_doc(baker, "reading-4-closed")
    for page in (baker, chen):
        page.context.close()
