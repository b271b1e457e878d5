"""End to end in headless Chromium: an auditor opens the policy simulator from the dashboard,
sees each policy's figures and the plot, moves the high cut and sees the figures change."""

from __future__ import annotations

import numpy as np
import pytest

from screening.choices import Outcome
from tests.e2e.conftest import ARTIFACTS
from tests.factories import ModelVersionFactory, UserFactory, screen

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def routing_reads(page) -> str:
    return page.inner_text("#simulation-figures tr[data-policy=routing] td:nth-child(3)")


def test_an_auditor_moves_the_cut_and_the_figures_follow(live_server, browser_page):
    ARTIFACTS.mkdir(exist_ok=True)
    version = ModelVersionFactory(threshold=0.5, is_active=True)
    readers = [UserFactory(username=f"reader{i}", role="radiologist") for i in range(3)]
    UserFactory(username="auditor", role="auditor")
    rng = np.random.default_rng(7)
    for i in range(40):
        cancer = i % 5 == 0
        score = float(np.clip(rng.normal(0.3 + 0.4 * cancer, 0.18), 0.01, 0.99))
        first, second = (bool(rng.random() < (0.7 if cancer else 0.1)) for _ in range(2))
        decisions = [first, second] + ([cancer] if first != second else [])
        outcome = Outcome.MALIGNANT if cancer else Outcome.NORMAL
        screen(version, score, decisions, readers, outcome=outcome)
    page = browser_page

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "auditor")
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.click("text=Performance")
    page.click("#simulator-link")
    page.wait_for_url(f"{live_server.url}/reports/simulate/?version={version.pk}")
    page.wait_for_load_state("networkidle")
    assert "40 closed screens" in page.inner_text("#simulation-cohort")
    assert page.locator("#simulation-figures tbody tr").count() == 5
    plots = page.eval_on_selector_all("img.plot", "imgs => imgs.map(i => i.naturalWidth > 0)")
    assert plots == [True], plots
    assert "read differently with the AI shown" in page.inner_text("#simulation-limits")
    page.screenshot(path=str(ARTIFACTS / "e2e-simulator.png"), full_page=True)
    at_default = routing_reads(page)

    page.fill("#id_high", "0.2")
    page.click("#simulation-form button[type=submit]")
    page.wait_for_url("**high=0.2**")
    assert page.input_value("#id_high") == "0.2"
    assert "double read at 0.20 and above" in page.inner_text("#simulation-figures")
    # A lower cut double reads more screens: more reads per 1,000.
    assert int(routing_reads(page).split()[0]) > int(at_default.split()[0])
