"""End to end in headless Chromium at a reading station's 1366×768: a normal read in one key.

N records BI-RADS 1 for both breasts and no recall once the density is given (asked for by
a–d, and nothing is recorded until it is); digits set the right then the left category;
after recording, the next case opens; no key acts while the reader types in a text field.
Each test counts the reader's actions (keys + clicks), the reading-effort measure of issue 24.
"""

from __future__ import annotations

import time

import pytest

from screening.choices import CaseStatus, Decision, ReadKind
from screening.models import Read, ReaderSettings
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_reading_flow import PASSWORD, form_values
from tests.factories import ModelVersionFactory, UserFactory, case_with_images, score_case

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STATION = {"width": 1366, "height": 768}


@pytest.fixture
def station(browser_page):
    browser_page.set_viewport_size(STATION)
    return browser_page


def sign_in(page, live_server) -> None:
    UserFactory(username="reader", role="radiologist")
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "reader")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/worklist/")


def open_case(page, live_server, case) -> None:
    page.goto(f"{live_server.url}/cases/{case.pk}/")
    page.wait_for_selector("#read-form")


def in_viewport(page, selector: str) -> bool:
    """Whole and unscrolled on screen: inside the window and inside the sidebar's own box."""
    box = page.locator(selector).bounding_box()
    side = page.locator("#case-sidebar").bounding_box()
    bottom = min(STATION["height"], side["y"] + side["height"]) if side else 0
    return box is not None and 0 <= box["y"] and box["y"] + box["height"] <= bottom


def test_one_key_and_the_density_record_a_normal_read_and_open_the_next_case(live_server, station):
    case = case_with_images(images=2, score=0.2)
    following = case_with_images(images=2, score=0.1)
    page = station
    sign_in(page, live_server)
    open_case(page, live_server, case)
    actions = 0
    started = time.monotonic()

    page.keyboard.press("n")
    actions += 1
    assert "press a, b, c or d for the density" in page.inner_text("#key-feedback")
    assert form_values(page)["right"] == "1" and form_values(page)["left"] == "1"
    assert not Read.objects.exists()  # not recorded until the density is given
    page.wait_for_timeout(300)
    assert page.url == f"{live_server.url}/cases/{case.pk}/"

    with page.expect_navigation():
        page.keyboard.press("b")
        actions += 1
    page.wait_for_url(f"{live_server.url}/cases/{following.pk}/")
    read = Read.objects.get()
    assert (read.case_id, read.kind, read.decision) == (case.pk, ReadKind.FIRST, Decision.NO_RECALL)
    assert (read.birads_right, read.birads_left, read.density) == (1, 1, "b")
    assert not read.findings.exists()
    assert f"Read recorded for case {case.pk}" in page.inner_text(".messages")
    assert page.is_visible("#read-form")
    seconds = time.monotonic() - started
    assert actions <= 2, f"a normal read took {actions} actions"
    print(f"\nreading effort, normal read: {actions} actions, {seconds:.2f} s to the next case")


def test_n_with_the_density_already_chosen_records_at_once(live_server, station):
    case = case_with_images(images=2)  # no AI result: Record read, not Accept AI
    page = station
    sign_in(page, live_server)
    open_case(page, live_server, case)
    page.check("input[name=density][value=c]")
    with page.expect_navigation():
        page.keyboard.press("n")
    read = Read.objects.get()
    assert (read.birads_right, read.birads_left, read.density, read.decision) == (
        1, 1, "c", Decision.NO_RECALL,
    )  # fmt: skip


def test_digits_set_the_right_then_the_left_category_and_say_so(live_server, station):
    case = case_with_images(images=2, score=0.2)
    page = station
    sign_in(page, live_server)
    open_case(page, live_server, case)
    page.keyboard.press("2")
    assert "right breast BI-RADS 2" in page.inner_text("#key-feedback")
    page.keyboard.press("1")
    assert "left breast BI-RADS 1" in page.inner_text("#key-feedback")
    assert (form_values(page)["right"], form_values(page)["left"]) == ("2", "1")
    assert "right 2, left 1" in page.inner_text("#read-summary") or "density" in page.inner_text(
        "#read-summary"
    )
    page.wait_for_timeout(300)
    assert not Read.objects.exists()


def test_no_key_acts_while_the_reader_types_in_a_text_field(live_server, station):
    case = case_with_images(images=2, score=0.2)
    page = station
    sign_in(page, live_server)
    open_case(page, live_server, case)
    page.click("#id_reason")
    page.keyboard.type("n1b a")
    page.wait_for_timeout(500)
    assert page.input_value("#id_reason") == "n1b a"
    assert (form_values(page)["right"], form_values(page)["left"]) == ("", "")
    assert form_values(page)["density"] == ""
    assert page.is_hidden("#key-feedback")
    assert not Read.objects.exists() and page.url == f"{live_server.url}/cases/{case.pk}/"


def test_the_record_button_and_the_ai_summary_fit_a_1366_by_768_station(live_server, station):
    case = case_with_images(images=2, score=0.9)
    case_with_images(images=2)  # a next case, so its link and the setting show too
    page = station
    sign_in(page, live_server)
    open_case(page, live_server, case)
    page.screenshot(path=str(ARTIFACTS / "station-1366x768.png"))
    assert in_viewport(page, "#ai-summary"), page.locator("#ai-summary").bounding_box()
    assert in_viewport(page, "#decision-buttons button[type=submit] >> nth=0"), page.locator(
        "#decision-buttons button[type=submit]"
    ).first.bounding_box()
    assert not page.is_visible("#ai-evidence")  # folded away until asked for
    page.click("#ai-summary")
    assert page.is_visible("#ai-evidence")


def test_the_record_button_fits_beside_an_ai_that_is_not_validated(live_server, station):
    """Every site starts here: the version's statement (read as without AI) takes more room
    than a one-line summary, and the read must still be recordable without scrolling."""
    unvalidated = ModelVersionFactory(evidence={})
    case = case_with_images(images=2)
    score_case(case, 0.9, unvalidated)
    case_with_images(images=2)
    page = station
    sign_in(page, live_server)
    open_case(page, live_server, case)
    page.screenshot(path=str(ARTIFACTS / "station-1366x768-not-validated.png"))
    assert in_viewport(page, "#ai-not-validated"), page.locator("#ai-not-validated").bounding_box()
    assert in_viewport(page, "#decision-buttons button[type=submit] >> nth=0"), page.locator(
        "#decision-buttons button[type=submit]"
    ).first.bounding_box()


def test_a_reader_who_turned_it_off_stays_on_the_case(live_server, station):
    case = case_with_images(images=2)
    case_with_images(images=2)
    page = station
    sign_in(page, live_server)
    open_case(page, live_server, case)
    assert "the next case opens" in page.inner_text("#open-next-form")
    with page.expect_navigation():
        page.click("#open-next-toggle")
    assert ReaderSettings.objects.get().open_next_after_read is False
    assert page.url == f"{live_server.url}/cases/{case.pk}/"
    assert "this case stays open" in page.inner_text("#open-next-form")
    page.keyboard.press("n")
    with page.expect_navigation():
        page.keyboard.press("a")
    assert page.url == f"{live_server.url}/cases/{case.pk}/"
    assert page.is_visible("#my-read")
    assert Read.objects.get().density == "a"


def test_the_case_status_moves_on_when_the_ai_result_arrives_in_place(live_server, station):
    """Before: the AI box showed the result, the Status line still said "Awaiting AI"."""
    case = case_with_images(images=2, status=CaseStatus.AWAITING_AI)
    page = station
    sign_in(page, live_server)
    open_case(page, live_server, case)
    assert page.inner_text("#case-status") == "Awaiting AI"
    score_case(case, 0.3)  # moves the case to "ready", as the pipeline does
    page.wait_for_selector("#ai-summary .band:not(.band-pending)", timeout=15_000)
    page.wait_for_function(
        "document.getElementById('case-status').textContent === 'Ready to read'", timeout=5_000
    )
    assert "status-ready" in page.get_attribute("#case-status", "class")


def test_the_site_select_shows_upper_outer_quadrant_whole(live_server, station):
    case = case_with_images(images=2)
    page = station
    sign_in(page, live_server)
    open_case(page, live_server, case)
    page.select_option("#id_site_R", "UOQ")
    room = page.evaluate(
        """() => {
            const select = document.getElementById('id_site_R');
            const style = getComputedStyle(select);
            const context = document.createElement('canvas').getContext('2d');
            context.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
            const text = context.measureText(select.selectedOptions[0].text).width;
            const inner = select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
            return inner - 20 - text;  // 20 px for the drop-down arrow
        }"""
    )
    assert room >= 0, f"'Upper outer quadrant' is cut by {-room:.0f} px"


def test_n_on_a_case_the_ai_would_recall_asks_for_the_override_reason_and_records_nothing(
    live_server, station
):
    case = case_with_images(images=2, score=0.95)  # the AI suggests recall
    page = station
    sign_in(page, live_server)
    open_case(page, live_server, case)
    page.keyboard.press("n")
    page.keyboard.press("b")
    page.wait_for_selector("#override-panel:not([hidden])")
    assert "give your reason, then Confirm" in page.inner_text("#key-feedback")
    assert page.evaluate("document.activeElement.id") == "id_reason"
    page.wait_for_timeout(300)
    assert not Read.objects.exists() and page.url == f"{live_server.url}/cases/{case.pk}/"


def test_a_mouse_change_after_n_stops_a_letter_from_sending_the_read(live_server, station):
    case = case_with_images(images=2, score=0.2)
    page = station
    sign_in(page, live_server)
    open_case(page, live_server, case)
    page.keyboard.press("n")
    page.select_option("#id_birads_left", "2")
    assert "the normal read was not recorded" in page.inner_text("#key-feedback")
    page.locator("#id_birads_left").blur()
    page.keyboard.press("b")  # no density key now: nothing is chosen or sent by it
    page.wait_for_timeout(300)
    assert not Read.objects.exists() and form_values(page)["density"] == ""
