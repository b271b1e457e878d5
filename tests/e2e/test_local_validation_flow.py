"""End to end in headless Chromium: an auditor goes from the dashboard to a version's local
validation, sees its figures and plot, and opens a cancer the readers missed."""

from __future__ import annotations

import numpy as np
import pytest

from screening.choices import Outcome
from tests.e2e.conftest import ARTIFACTS
from tests.factories import ModelVersionFactory, UserFactory, screen

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_auditor_opens_local_validation_and_a_missed_cancer(live_server, browser_page):
    ARTIFACTS.mkdir(exist_ok=True)
    version = ModelVersionFactory(threshold=0.5, is_active=True)
    readers = [UserFactory(username=f"reader{i}", role="radiologist") for i in range(2)]
    UserFactory(username="auditor", role="auditor")
    rng = np.random.default_rng(1)
    for i in range(36):
        cancer = i % 4 == 0
        score = float(np.clip(rng.normal(0.35 + 0.3 * cancer, 0.15), 0.01, 0.99))
        recall = bool(rng.random() < (0.75 if cancer else 0.1))
        outcome = Outcome.MALIGNANT if cancer else Outcome.NORMAL
        screen(version, score, [recall, recall], readers, outcome=outcome)
    missed = screen(version, 0.93, [False, False], readers, outcome=Outcome.MALIGNANT)
    page = browser_page

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "auditor")
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.click("text=Performance")
    page.click("#local-validation-link")
    page.wait_for_url(f"{live_server.url}/reports/local/?version={version.pk}")
    page.wait_for_load_state("networkidle")
    plots = page.eval_on_selector_all("img.plot", "imgs => imgs.map(i => i.naturalWidth > 0)")
    assert plots == [True], plots
    assert "37 screens of 37 women, 10 cancers" in page.inner_text("#local-counts")
    assert page.locator("#local-operating-points tbody tr").count() == 4  # 2 cuts x 2 readers
    page.screenshot(path=str(ARTIFACTS / "e2e-local-validation.png"), full_page=True)

    page.click(f"#scored-high-missed a[href='/cases/{missed.pk}/']")
    page.wait_for_url(f"{live_server.url}/cases/{missed.pk}/")
    assert page.locator("form.read-form").count() == 0  # read-only for auditors
