"""In headless Chromium: what a reader sees of an AI that has not earned its place, and of
one that has (issue 12). Checked on the rendered page, not only in the HTML sent."""

from __future__ import annotations

import pytest

from screening.choices import Decision
from screening.models import AI_NOT_VALIDATED, AIResult, Read
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_reading_flow import choose, log_in, open_case, show_ai_evidence
from tests.factories import ModelVersionFactory, UserFactory, unvalidated_evidence
from tests.screening.ai.test_ai_evidence import MARKS, case_scored_by, scored_evidence

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_unvalidated_ai_neither_orders_nor_suggests_nor_paints(live_server, browser_page):
    UserFactory(username="reader", role="radiologist")
    version = ModelVersionFactory(is_active=True, evidence=unvalidated_evidence())
    newest_high = case_scored_by(version, 0.98, hours_ago=1)
    oldest_low = case_scored_by(version, 0.1, hours_ago=20)
    page = browser_page
    log_in(page, live_server, "reader")
    rows = page.locator("#worklist tr[data-case]")
    assert [rows.nth(i).get_attribute("data-case") for i in range(2)] == [
        str(oldest_low.pk),
        str(newest_high.pk),
    ]
    assert "Longest waiting first" in page.inner_text("#worklist-order")
    badge = page.locator(f'tr[data-case="{newest_high.pk}"] .band')
    assert badge.inner_text() == "AI not validated"  # no score: issue 21
    assert badge.get_attribute("title") == AI_NOT_VALIDATED
    page.screenshot(path=str(ARTIFACTS / "evidence-worklist-unvalidated.png"))

    open_case(page, live_server, newest_high)
    show_ai_evidence(page)
    box = page.inner_text("#ai-box")
    assert AI_NOT_VALIDATED in box and "no score, band, probability or recall suggestion" in box
    assert "Heatmaps hidden" in box and "Region marks hidden" in box
    assert page.locator("#accept-ai").count() == 0 and page.is_visible("#record-read")
    assert page.locator(".panel img.heatmap").count() == 0
    assert page.locator(".panel svg.marks").count() == 0
    page.screenshot(path=str(ARTIFACTS / "evidence-case-unvalidated.png"))

    choose(page, "4", "1", "b", finding_R="mass", site_R="10")
    with page.expect_navigation():
        page.click("#record-read")
    read = Read.objects.get(case=newest_high)
    assert read.decision == Decision.RECALL and read.agrees_with_ai is None


def test_a_validated_ai_shows_its_exam_score_band_and_marks_on_the_film(live_server, browser_page):
    UserFactory(username="reader", role="radiologist")
    version = ModelVersionFactory(is_active=True, evidence=scored_evidence())
    low = case_scored_by(version, 0.2, hours_ago=20)
    high = case_scored_by(version, 0.97, hours_ago=1)
    page = browser_page
    log_in(page, live_server, "reader")
    rows = page.locator("#worklist tr[data-case]")
    assert rows.first.get_attribute("data-case") == str(high.pk)
    assert page.locator(f'tr[data-case="{high.pk}"] .band').inner_text() == "10/10 · High"
    assert page.locator(f'tr[data-case="{low.pk}"] .band').inner_text() == "3/10 · Low"

    open_case(page, live_server, high)
    show_ai_evidence(page)
    assert "Estimated chance of an abnormal finding (benign or malignant): 57 %" in page.inner_text(
        "#ai-box"
    )
    assert page.is_visible("#accept-ai")
    marks = page.locator(".panel svg.marks")
    assert marks.count() == 2
    circle = marks.first.locator("circle").first.bounding_box()
    # .layers is the painted film's rectangle: the viewer keeps it on the film's corners.
    page.wait_for_selector('#viewer[data-ready="1"]', state="attached")
    film = page.locator(".panel .layers").first.bounding_box()
    assert circle and film and circle["width"] > 2
    # The first mark sits at column 12, row 20 of the film: inside the painted image.
    assert film["x"] <= circle["x"] + circle["width"] / 2 <= film["x"] + film["width"]
    page.keyboard.press("h")
    assert not marks.first.is_visible()
    page.keyboard.press("h")
    assert marks.first.is_visible()
    film_result = AIResult.objects.filter(case=high, image__isnull=False).first()
    assert film_result is not None and film_result.marks == MARKS
    page.screenshot(path=str(ARTIFACTS / "evidence-case-validated.png"))


def test_the_models_page_shows_each_gate_with_its_figures_and_verdict(live_server, browser_page):
    UserFactory(username="auditor", role="auditor")
    good = ModelVersionFactory(is_active=True, evidence=scored_evidence())
    bad = ModelVersionFactory(evidence=unvalidated_evidence())
    page = browser_page
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "auditor")
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    page.goto(f"{live_server.url}/models/")
    for version, verdict in ((good, "Passed"), (bad, "Failed")):
        rows = page.locator(f"#gates-{version.pk} tbody tr")
        assert rows.count() == 3
        names = [rows.nth(i).locator(".gate-name").inner_text() for i in range(3)]
        assert [n.split(":")[0] for n in names] == ["Triage", "Heat map", "Region marks"]
        for i in range(3):
            assert rows.nth(i).locator(".gate-verdict").inner_text().startswith(verdict)
            assert rows.nth(i).locator(".gate-rule").is_visible()
    bad_triage = page.locator(f"#gates-{bad.pk} tbody tr").first
    assert "17 of them abnormal" in bad_triage.locator(".gate-figures").inner_text()
    assert "at least 30 abnormal films" in bad_triage.locator(".gate-rule").inner_text()
    assert "too few to tell" in bad_triage.locator(".gate-verdict").inner_text()
    page.locator("#gates").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "models-gates.png"), full_page=True)
