"""End to end in headless Chromium: an auditor reads the figures, drills down and exports."""

from __future__ import annotations

import csv

import pytest

from screening.choices import AuditAction, Outcome
from screening.models import AuditEvent
from tests.e2e.conftest import ARTIFACTS
from tests.factories import ModelVersionFactory, N, R, UserFactory, screen

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_auditor_reads_the_dashboard_opens_a_discordant_case_and_exports(
    live_server, browser_page
):
    ARTIFACTS.mkdir(exist_ok=True)
    version = ModelVersionFactory(threshold=0.5, is_active=True)
    readers = [UserFactory(username=f"reader{i}", role="radiologist") for i in range(2)]
    UserFactory(username="auditor", role="auditor")
    screen(version, 0.9, [R, R], readers, outcome=Outcome.MALIGNANT)
    missed = screen(version, 0.8, [N, N], readers, outcome=Outcome.MALIGNANT)
    screen(version, 0.2, [N, N], readers, outcome=Outcome.NORMAL)
    screen(version, 0.6, [R, R], readers, outcome=Outcome.BENIGN)
    page = browser_page

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "auditor")
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.click("text=Performance")
    page.wait_for_url(f"{live_server.url}/reports/")
    page.fill("#id_threshold", "0.85")
    page.click("text=Apply")
    page.wait_for_load_state("networkidle")
    plots = page.eval_on_selector_all("img.plot", "imgs => imgs.map(i => i.naturalWidth > 0)")
    assert plots == [True] * 4, plots
    assert "0.85 (what-if)" in page.content()
    page.screenshot(path=str(ARTIFACTS / "e2e-auditor-dashboard.png"), full_page=True)

    page.click("text=Discordant cases")
    page.click(f"a[href='/cases/{missed.pk}/']")
    page.wait_for_url(f"{live_server.url}/cases/{missed.pk}/")
    assert page.locator("form.read-form").count() == 0  # read-only for auditors
    page.go_back()

    with page.expect_download() as download:
        page.click("text=Export CSV")
    rows = list(csv.DictReader(open(download.value.path(), encoding="utf-8")))
    assert [row["case_id"] for row in rows] == [str(missed.pk)]
    event = AuditEvent.objects.get(action=AuditAction.EXPORT)
    assert event.actor is not None
    assert event.detail["what"] == "discordant" and event.actor.username == "auditor"
