"""End to end in headless Chromium: a radiologist overrides the AI and moves on."""

from __future__ import annotations

import pytest

from screening.choices import Decision
from screening.models import Read
from tests.e2e.conftest import ARTIFACTS
from tests.factories import UserFactory, case_with_images

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_radiologist_overrides_the_ai_and_lands_on_the_next_case(live_server, browser_page):  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    UserFactory(username="reader", role="radiologist")
    top = case_with_images(images=4, score=0.93, is_synthetic=True)
    following = case_with_images(images=2, score=0.41, is_synthetic=True)
    page = browser_page

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "reader")
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/worklist/")
    page.screenshot(path=str(ARTIFACTS / "e2e-worklist.png"))

    page.click("#open-top")
    page.wait_for_url(f"{live_server.url}/cases/{top.pk}/")
    assert page.locator(".panel").count() == 4
    assert page.locator(".panel img.heatmap").count() == 4
    page.wait_for_load_state("networkidle")
    loaded = page.eval_on_selector_all(".panel img", "imgs => imgs.map(i => i.naturalWidth > 0)")
    assert loaded == [True] * 8, loaded
    page.keyboard.press("o")
    page.fill("#id_reason", "Asymmetry is a summation artefact on both views")
    page.screenshot(path=str(ARTIFACTS / "e2e-case-override.png"))
    page.click("#confirm-override")

    page.wait_for_url(f"{live_server.url}/cases/{following.pk}/")
    assert "Read recorded" in page.content()
    page.screenshot(path=str(ARTIFACTS / "e2e-next-case.png"))
    read = Read.objects.get(case=top)
    assert (read.decision, read.agrees_with_ai) == (Decision.NO_RECALL, False)
    assert read.reason.startswith("Asymmetry")
    assert read.birads in (1, 2)
