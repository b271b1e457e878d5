"""End to end in headless Chromium: a read is never lost to the session ending.

The reader fills a full read, the session ends (its row deleted, or its cookie gone), the
reader presses the button: the sign-in page says what happened, signing in leads back to
the case with every entry in place and a line saying so, and the read is recorded once.
"""

from __future__ import annotations

import time

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone

from screening.choices import Decision
from screening.models import Read, ReadDraft
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_reading_flow import PASSWORD, choose, form_values, log_in, open_case
from tests.factories import UserFactory, case_with_images

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REASON = "Spiculated mass, right 10 o'clock, both views"
FULL_READ = {
    "right": "4", "left": "1", "finding_R": "mass", "site_R": "10", "finding_L": "",
    "density": "b",
}  # fmt: skip
KEPT_LINE = "Your unsaved read was kept: check it and record it."


def record_button(page) -> str:
    """Accept AI where the AI suggests recall (as this read does), else Record read."""
    return "#accept-ai" if page.locator("#accept-ai").count() else "#record-read"


def wait_for_draft(case, fields: dict, seconds: float = 10) -> ReadDraft:
    """The server's draft once it holds ``fields`` (the page saves it as the reader types)."""
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        draft = ReadDraft.objects.filter(case=case).first()
        if draft and all(draft.fields.get(k) == v for k, v in fields.items()):
            return draft
        time.sleep(0.1)
    raise AssertionError(f"no draft with {fields}: {ReadDraft.objects.values('fields')}")


def session_key(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "sessionid")


def sign_in_again(page, live_server, case) -> None:
    """From the sign-in page the reader was sent to: sign in, land on the case."""
    page.fill("#id_username", "reader")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/cases/{case.pk}/")
    page.wait_for_selector("#read-form")


def record_once_and_check(page, case) -> None:
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.url.endswith("/read/") else None)
    with page.expect_navigation():
        page.click(record_button(page))
    assert page.is_visible("#my-read")
    read = Read.objects.get(case=case)
    assert (read.decision, read.birads_right, read.birads_left, read.density) == (
        Decision.RECALL, 4, 1, "b",
    )  # fmt: skip
    assert [(f.breast, f.finding, f.site) for f in read.findings.all()] == [("R", "mass", "10")]
    assert read.reason == REASON
    assert len(posts) == 1 and Read.objects.count() == 1
    assert not ReadDraft.objects.exists()
    assert (
        page.evaluate("Object.keys(sessionStorage).filter(k => k.startsWith('mammo.read.'))") == []
    )


def test_a_read_sent_after_the_session_row_was_deleted_is_back_after_signing_in(
    live_server, browser_page
):
    """Before: the sign-in page said nothing, then the browser landed on "HTTP ERROR 405"
    (the POST-only address fetched with GET) and every entry was gone.

    Here half the read is typed after the session ended, so the server never holds the
    whole of it before the submit: the tab's copy and the held POST carry it."""
    UserFactory(username="reader", role="radiologist")
    case = case_with_images(images=2, score=0.93)
    page = browser_page
    log_in(page, live_server, "reader")
    open_case(page, live_server, case)
    page.select_option("#id_birads_right", "4")
    page.select_option("#id_finding_R", "mass")
    wait_for_draft(case, {"birads_right": "4", "finding_R": "mass"})

    Session.objects.filter(session_key=session_key(page)).delete()
    page.select_option("#id_site_R", "10")
    page.select_option("#id_birads_left", "1")
    page.check("input[name=density][value=b]")
    page.fill("#id_reason", REASON)
    page.wait_for_selector("#session-warning:not([hidden])")  # the draft save met a 401
    assert "You are signed out" in page.inner_text("#session-warning")
    assert page.is_visible("#sign-in-again")

    with page.expect_navigation():
        page.click(record_button(page))
    assert page.url == f"{live_server.url}/accounts/login/?next=/cases/{case.pk}/"
    assert "Your session ended before your read was recorded" in page.inner_text(".messages")
    assert not Read.objects.exists()

    sign_in_again(page, live_server, case)
    assert "405" not in page.content()
    assert form_values(page) == FULL_READ
    assert page.input_value("#id_reason") == REASON
    assert page.is_visible("#draft-restored") and page.inner_text("#draft-restored") == KEPT_LINE
    assert "reader" not in page.url and "mass" not in page.url
    record_once_and_check(page, case)


def test_a_read_whose_session_cookie_went_is_back_after_signing_in(live_server, browser_page):
    """The whole read reached the server as a draft before the cookie went."""
    UserFactory(username="reader", role="radiologist")
    case = case_with_images(images=2, score=0.93)
    page = browser_page
    log_in(page, live_server, "reader")
    open_case(page, live_server, case)
    choose(page, "4", "1", "b", finding_R="mass", site_R="10")
    page.fill("#id_reason", REASON)
    wait_for_draft(case, {"density": "b", "site_R": "10", "reason": REASON})

    page.context.clear_cookies(name="sessionid")
    with page.expect_navigation():
        page.click(record_button(page))
    assert "/accounts/login/" in page.url
    assert "Your session ended" in page.inner_text(".messages")
    assert not Read.objects.exists()

    sign_in_again(page, live_server, case)
    assert form_values(page) == FULL_READ and page.input_value("#id_reason") == REASON
    assert page.inner_text("#draft-restored") == KEPT_LINE
    record_once_and_check(page, case)


def test_the_page_warns_before_the_session_ends_and_can_keep_it(
    live_server, browser_page, settings
):
    settings.SESSION_COOKIE_AGE = 12
    settings.SESSION_WARN_SECONDS = 8
    settings.SESSION_TOUCH_SECONDS = 0
    UserFactory(username="reader", role="radiologist")
    case = case_with_images(images=2, score=0.93)
    page = browser_page
    log_in(page, live_server, "reader")
    open_case(page, live_server, case)
    assert not page.is_visible("#session-warning")
    choose(page, "4", "1", "b", finding_R="mass", site_R="10")
    page.fill("#id_reason", REASON)
    wait_for_draft(case, {"reason": REASON})

    page.wait_for_selector("#session-warning:not([hidden])", timeout=15_000)
    assert "You will be signed out in 0:0" in page.inner_text("#session-warning")
    assert page.is_visible("#stay-signed-in") and not page.is_visible("#sign-in-again")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "session-warning.png"))
    page.click("#stay-signed-in")
    page.wait_for_selector("#session-warning", state="hidden")
    key = session_key(page)
    page.wait_for_timeout(5_000)  # past the first deadline: the session lasts
    assert Session.objects.filter(session_key=key, expire_date__gt=timezone.now()).exists()

    page.wait_for_selector("#sign-in-again:not([hidden])", timeout=20_000)
    assert "You are signed out" in page.inner_text("#session-warning")
    page.screenshot(path=str(ARTIFACTS / "session-ended.png"))
    time.sleep(1)
    assert not Session.objects.filter(session_key=key, expire_date__gt=timezone.now()).exists()
    settings.SESSION_COOKIE_AGE = 1800  # signed in again, the session lasts while we record
    with page.expect_navigation():
        page.click("#sign-in-again")
    sign_in_again(page, live_server, case)
    assert form_values(page) == FULL_READ and page.input_value("#id_reason") == REASON
    assert page.inner_text("#draft-restored") == KEPT_LINE
    record_once_and_check(page, case)


def test_entries_typed_after_the_session_ended_come_back_from_the_tab(live_server, browser_page):
    """No submit at all: the reader types on after the session ended (the server refuses the
    draft), signs in again from the warning, and finds the whole read, which the page then
    hands to the server as the draft."""
    UserFactory(username="reader", role="radiologist")
    case = case_with_images(images=2, score=0.93)
    page = browser_page
    log_in(page, live_server, "reader")
    open_case(page, live_server, case)
    page.select_option("#id_birads_right", "4")
    wait_for_draft(case, {"birads_right": "4"})

    Session.objects.filter(session_key=session_key(page)).delete()
    choose(page, "4", "1", "b", finding_R="mass", site_R="10")
    page.fill("#id_reason", REASON)
    page.wait_for_selector("#sign-in-again:not([hidden])")
    assert ReadDraft.objects.get().fields == {"birads_right": "4"}  # all the server holds

    with page.expect_navigation():
        page.click("#sign-in-again")
    sign_in_again(page, live_server, case)
    assert form_values(page) == FULL_READ and page.input_value("#id_reason") == REASON
    assert page.inner_text("#draft-restored") == KEPT_LINE
    wait_for_draft(case, {"density": "b", "site_R": "10", "reason": REASON})
    record_once_and_check(page, case)


def test_another_reader_signing_in_on_the_same_tab_never_sees_the_kept_read(
    live_server, browser_page
):
    reader = UserFactory(username="reader", role="radiologist")
    UserFactory(username="colleague", role="radiologist")
    case = case_with_images(images=2, score=0.93)
    page = browser_page
    log_in(page, live_server, "reader")
    open_case(page, live_server, case)
    Session.objects.filter(session_key=session_key(page)).delete()
    choose(page, "4", "1", "b", finding_R="mass", site_R="10")
    page.fill("#id_reason", REASON)
    page.wait_for_selector("#sign-in-again:not([hidden])")
    with page.expect_navigation():
        page.click(record_button(page))  # held for "reader", should they sign in

    page.fill("#id_username", "colleague")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/cases/{case.pk}/")
    page.wait_for_selector("#read-form")
    assert form_values(page) == {k: "" for k in FULL_READ}
    assert page.input_value("#id_reason") == "" and REASON not in page.content()
    assert not page.is_visible("#draft-restored")
    keys = page.evaluate("Object.keys(sessionStorage).filter(k => k.startsWith('mammo.read.'))")
    assert not [k for k in keys if k.startswith(f"mammo.read.{reader.pk}.")], keys
    assert not ReadDraft.objects.exclude(fields={}).filter(reader__username="colleague").exists()
