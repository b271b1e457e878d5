"""In headless Chromium: an admin selects a reading policy; a reader meets it on the case
page: sequential reveal (the AI after an unaided opinion) and the safety net's prompt."""

from __future__ import annotations

import pytest

from screening.choices import AIReveal, Decision, ReadingPolicy, RevisionTrigger, Role
from screening.models import Read, SitePolicy, UnaidedOpinion
from screening.reading import actions
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_reading_flow import PASSWORD, choose, log_in, open_case
from tests.factories import ModelVersionFactory, UserFactory
from tests.screening.reading.test_policies import HIGH, LOW, arrive

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def test_an_admin_selects_a_policy_and_each_new_case_shows_it(live_server, browser_page):
    UserFactory(username="boss", role=Role.ADMIN)
    UserFactory(username="reader", role=Role.RADIOLOGIST)
    version = ModelVersionFactory(is_active=True)
    page = browser_page
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.click("nav >> text=Reading policy")
    assert "Standard double reading" in page.inner_text("#policy-in-force")
    page.select_option("#id_policy", ReadingPolicy.ROUTING)
    with page.expect_navigation():
        page.click("#set-policy")
    assert "Routing by AI" in page.inner_text("#policy-in-force")
    assert "boss" in page.inner_text("#policy-history")
    shot(page, "policy-page.png")
    assert SitePolicy.objects.get().policy == ReadingPolicy.ROUTING

    case = arrive(version, LOW)
    page.context.clear_cookies()
    log_in(page, live_server, "reader")
    open_case(page, live_server, case)
    shown = page.inner_text("#case-policy")
    assert "Routing by AI" in shown and "Single reading" in shown


def test_sequential_reveal_shows_the_ai_only_after_the_unaided_opinion(live_server, browser_page):
    boss = UserFactory(username="boss", role=Role.ADMIN)
    UserFactory(username="reader", role=Role.RADIOLOGIST)
    version = ModelVersionFactory(is_active=True)
    actions.set_policy(boss, ReadingPolicy.STANDARD, ai_reveal=AIReveal.SEQUENTIAL)
    case = arrive(version, HIGH)
    page = browser_page
    log_in(page, live_server, "reader")
    assert "AI after your read" in page.inner_text(f'tr[data-case="{case.pk}"]')
    open_case(page, live_server, case)
    assert page.is_visible("#ai-hidden") and page.locator("#ai-summary").count() == 0
    assert page.locator(".panel img.heatmap").count() == 0
    assert page.is_visible("#sequential-note")
    shot(page, "sequential-1-unaided.png")

    choose(page, "1", "1", "b")
    with page.expect_navigation():
        page.click("#record-read")
    assert page.is_visible("#revision-prompt") and page.is_visible("#ai-summary")
    assert "no recall" in page.inner_text("#unaided-opinion")
    shot(page, "sequential-2-revise.png")

    choose(page, "4", "1", "b", finding_R="mass", site_R="10")
    page.fill("#id_reason", "The AI's region shows a mass I missed")
    with page.expect_navigation():
        page.click("#accept-ai")
    opinion = UnaidedOpinion.objects.get()
    assert (opinion.trigger, opinion.decision) == (RevisionTrigger.SEQUENTIAL, Decision.NO_RECALL)
    assert opinion.changed and Read.objects.get().decision == Decision.RECALL


def test_the_safety_net_asks_to_confirm_a_no_recall_on_a_high_band_exam(live_server, browser_page):
    boss = UserFactory(username="boss", role=Role.ADMIN)
    UserFactory(username="reader", role=Role.RADIOLOGIST)
    version = ModelVersionFactory(is_active=True)
    actions.set_policy(boss, ReadingPolicy.SAFETY_NET)
    case = arrive(version, HIGH)
    page = browser_page
    log_in(page, live_server, "reader")
    open_case(page, live_server, case)
    choose(page, "1", "1", "b")
    page.fill("#id_reason", "Stable benign calcification")
    page.click("#override-ai")
    with page.expect_navigation():
        page.click("#confirm-override")
    assert not Read.objects.exists()
    prompt = page.inner_text("#revision-prompt")
    assert "Safety net" in prompt and "high band" in prompt
    shot(page, "safety-net-prompt.png")

    page.click("#override-ai")  # the opinion is put back in the form: confirm it
    with page.expect_navigation():
        page.click("#confirm-override")
    read = Read.objects.get()
    assert read.decision == Decision.NO_RECALL and read.unaided.changed is False
    assert page.locator("#revision-prompt").count() == 0
