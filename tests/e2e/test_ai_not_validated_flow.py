"""In headless Chromium: an AI version not validated for triage shows nothing that looks like
a ranking on any surface a reader or an auditor reaches (issue 21) — worklist and its risk
filter, case page and film captions (also when the result arrives while the page is open),
the API, the case CSV and the DICOM SR, downloaded as a user downloads them — and a
validated version still shows them."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pydicom
import pytest

from screening.choices import CaseStatus
from screening.models import AI_CAPTION_NOT_VALIDATED, AI_NOT_VALIDATED, RAW_SCORE_LABEL
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_reading_flow import PASSWORD, log_in, open_case, show_ai_evidence
from tests.factories import (
    ModelVersionFactory,
    UserFactory,
    case_with_images,
    dicom_case_with_images,
    score_case,
    screen,
)
from tests.screening.ai.test_ai_evidence import scored_evidence
from tests.screening.ai.test_ai_not_validated import RANKING_FIELDS, shipped_like_evidence
from tests.screening.interop.test_dicom_export import (
    ABNORMAL_LIKELIHOOD,
    COMMENT,
    PROBABILITY_OF_CANCER,
    code,
    descendants,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EXAM_SCORE = re.compile(r"\b\d+\s*/\s*10\b")


def _download(page, selector: str) -> Path:
    with page.expect_download() as info:
        page.click(selector)
    return Path(info.value.path())


def _sr_numbers(path: Path) -> tuple[set[str], list[str]]:
    """The coded names of the SR's numbers, and its comments' text."""
    items = descendants(pydicom.dcmread(path))
    return (
        {code(i) for i in items if i.ValueType == "NUM"},
        [i.TextValue for i in items if code(i) == COMMENT],
    )


def _case_csv(page) -> list[dict[str, str]]:
    path = _download(page, "text=Case-level CSV")
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_a_reader_sees_no_ranking_from_the_shipped_like_version(live_server, browser_page):
    UserFactory(username="reader", role="radiologist")
    version = ModelVersionFactory(is_active=True, threshold=0.915, evidence=shipped_like_evidence())
    high = dicom_case_with_images(images=2)
    score_case(high, 0.99, version)
    low = case_with_images(images=2)
    score_case(low, 0.2, version)
    page = browser_page
    log_in(page, live_server, "reader")

    badges = page.locator("#worklist tr[data-case] .band")
    assert badges.all_inner_texts() == ["AI not validated", "AI not validated"]
    assert badges.first.get_attribute("title") == AI_NOT_VALIDATED
    assert page.locator("select[name=band]").count() == 0
    assert not EXAM_SCORE.search(page.inner_text("#worklist"))
    page.goto(f"{live_server.url}/worklist/?band=high")
    assert f"The risk filter is off. {AI_NOT_VALIDATED}" in page.inner_text(".messages")
    assert page.locator("#worklist tr[data-case]").count() == 2  # nothing triaged by it
    page.screenshot(path=str(ARTIFACTS / "not-validated-worklist.png"))

    open_case(page, live_server, high)
    show_ai_evidence(page)
    box = page.inner_text("#ai-box")
    assert AI_NOT_VALIDATED in box and "0.99" not in box and not EXAM_SCORE.search(box)
    for shown in ("#ai-probability", "#ai-band", "#ai-suggests", "#accept-ai"):
        assert page.locator(shown).count() == 0, shown
    captions = page.locator(".panel.current .ai-caption").all_inner_texts()
    assert captions and set(captions) == {f"· {AI_CAPTION_NOT_VALIDATED}"}
    page.screenshot(path=str(ARTIFACTS / "not-validated-case.png"))

    numbers, comments = _sr_numbers(_download(page, "text=AI report (DICOM SR)"))
    assert numbers == set() and comments == [AI_NOT_VALIDATED] * 3

    body = page.request.get(f"{live_server.url}/api/cases/{high.pk}/").json()
    assert (body["ai_score"], body["risk_band"]) == (None, None)
    result = body["case_ai_result"]
    assert all(result[field] is None for field in RANKING_FIELDS)
    assert result["not_shown_reason"] == body["not_shown_reason"] == AI_NOT_VALIDATED
    refused = page.request.get(f"{live_server.url}/api/cases/?band=high")
    assert refused.status == 400 and AI_NOT_VALIDATED in refused.json()["detail"]


def test_the_result_arriving_live_brings_the_statement_not_a_score(live_server, browser_page):
    UserFactory(username="reader", role="radiologist")
    version = ModelVersionFactory(is_active=True, evidence=shipped_like_evidence())
    case = case_with_images(images=2, status=CaseStatus.AWAITING_AI)
    page = browser_page
    log_in(page, live_server, "reader")
    open_case(page, live_server, case)
    assert "Awaiting AI" in page.inner_text("#ai-box")
    score_case(case, 0.99, version)  # live.js fetches the AI panel and puts it in place
    page.wait_for_selector("#ai-not-validated", timeout=10_000)
    assert AI_NOT_VALIDATED in page.inner_text("#ai-box")
    assert page.locator("#accept-ai").count() == 0
    captions = page.locator(".panel.current .ai-caption").all_inner_texts()
    assert set(captions) == {f"· {AI_CAPTION_NOT_VALIDATED}"}
    assert not EXAM_SCORE.search(page.inner_text("body"))


def test_an_auditor_gets_the_raw_score_labelled_and_figures_of_an_unvalidated_model(
    live_server, browser_page
):
    UserFactory(username="auditor", role="auditor")
    readers = [UserFactory(role="radiologist"), UserFactory(role="radiologist")]
    version = ModelVersionFactory(is_active=True, evidence=shipped_like_evidence())
    for score in (0.95, 0.97, 0.99):
        screen(version, score, [False, False], readers)
    page = browser_page
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "auditor")
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.goto(f"{live_server.url}/reports/")
    assert "describes an unvalidated model" in page.inner_text("#not-validated")
    outcomes = page.locator("section:has(h2:text('Against outcomes')) tbody tr td:first-child")
    assert "AI (unvalidated model)" in outcomes.all_inner_texts()
    page.screenshot(path=str(ARTIFACTS / "not-validated-auditor.png"), full_page=True)
    rows = _case_csv(page)
    assert len(rows) == 3
    for row in rows:
        assert row["ai_score"] and row["ai_score_note"] == RAW_SCORE_LABEL
        for column in ("ai_exam_score", "ai_calibrated_probability", "ai_decision", "ai_band"):
            assert row[column] == "", column


def test_a_validated_version_still_shows_its_figures_everywhere(live_server, browser_page):
    UserFactory(username="reader", role="radiologist")
    version = ModelVersionFactory(is_active=True, evidence=scored_evidence())
    high = dicom_case_with_images(images=2)
    score_case(high, 0.97, version)
    low = case_with_images(images=2)
    score_case(low, 0.2, version)
    page = browser_page
    log_in(page, live_server, "reader")
    page.goto(f"{live_server.url}/worklist/?band=high")
    rows = page.locator("#worklist tr[data-case]")
    assert rows.count() == 1 and rows.first.get_attribute("data-case") == str(high.pk)
    assert page.locator(".band").first.inner_text() == "10/10 · High"

    open_case(page, live_server, high)
    show_ai_evidence(page)
    assert "(benign or malignant): 57 %" in page.inner_text("#ai-probability")
    assert set(page.locator(".panel.current .ai-caption").all_inner_texts()) == {"· AI 10/10"}
    numbers, comments = _sr_numbers(_download(page, "text=AI report (DICOM SR)"))
    assert numbers == {ABNORMAL_LIKELIHOOD, "EXAMSCORE"} and comments == []
    assert PROBABILITY_OF_CANCER not in numbers  # its target is "abnormal", not cancer
    body = page.request.get(f"{live_server.url}/api/cases/{high.pk}/").json()
    assert body["risk_band"] == "high" and body["not_shown_reason"] is None
    assert body["case_ai_result"]["exam_score"] == 10
