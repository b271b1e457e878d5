"""A read is never lost: the reader's draft (saved as they type, seen by nobody else) and the
read sent after the session ended, given back to its reader after they sign in."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import timezone

from screening.choices import CaseStatus, Decision, ReadKind
from screening.middleware import TOUCHED
from screening.models import AuditEvent, Read, ReadDraft
from screening.reading import actions as reading_actions
from tests.factories import UserFactory, case_with_images, read_input

PASSWORD = "correct-horse-battery"
REASON = "Draft note: asymmetry right upper outer, check the MLO"
DRAFT = {
    "birads_right": "4",
    "birads_left": "1",
    "density": "c",
    "finding_R": "asymmetry",
    "site_R": "UOQ",
    "reason": REASON,
}


def save(client, case, fields=DRAFT):
    return client.post(reverse("case-draft", args=[case.pk]), fields)


def form_of(client, case) -> dict:
    return client.get(reverse("case-detail", args=[case.pk])).context["form"].initial


def test_a_draft_is_kept_and_put_back_when_the_reader_opens_the_case_again(client, radiologist):
    case = case_with_images(score=0.2)
    client.force_login(radiologist)
    answer = save(client, case)
    assert answer.status_code == 200 and answer.json()["kept"] is True
    assert 0 < answer.json()["expires_in"] <= settings.SESSION_COOKIE_AGE
    assert ReadDraft.objects.get().fields == DRAFT

    page = client.get(reverse("case-detail", args=[case.pk]))
    html = page.content.decode()
    assert {k: page.context["form"].initial[k] for k in DRAFT} == DRAFT
    assert '<option value="4" selected>' in html and REASON in html
    assert 'value="c" required id="id_density_2" checked' in html
    assert "Your unsaved read was kept: check it and record it." in html
    assert 'id="draft-restored" role="status" hidden' not in html


def test_a_case_without_a_draft_says_nothing_was_kept(client, radiologist):
    case = case_with_images(score=0.2)
    client.force_login(radiologist)
    html = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert 'id="draft-restored" role="status" hidden' in html


def test_an_emptied_form_drops_the_draft(client, radiologist):
    case = case_with_images()
    client.force_login(radiologist)
    save(client, case)
    answer = save(client, case, {"birads_right": "", "reason": ""})
    assert answer.status_code == 200 and answer.json()["kept"] is False
    assert not ReadDraft.objects.exists()


@pytest.mark.parametrize("field", ["birads_right", "density", "finding_R", "site_L"])
def test_a_value_the_read_does_not_take_is_refused_and_nothing_kept(client, radiologist, field):
    case = case_with_images()
    client.force_login(radiologist)
    answer = save(client, case, {**DRAFT, field: "<script>"})
    assert answer.status_code == 400 and "not a value this read takes" in answer.json()["detail"]
    assert not ReadDraft.objects.exists()


def test_only_readers_keep_drafts(client, auditor, admin_user, roleless):
    case = case_with_images()
    for user in (auditor, admin_user, roleless):
        client.force_login(user)
        assert save(client, case).status_code == 403
    client.logout()
    anonymous = save(client, case)
    assert anonymous.status_code == 401 and anonymous["Content-Type"] == "application/json"
    assert not ReadDraft.objects.exists()


def test_a_draft_needs_the_csrf_token(radiologist):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(radiologist)
    case = case_with_images()
    assert save(client, case).status_code == 403
    assert not ReadDraft.objects.exists()


def test_a_reader_who_may_not_read_the_case_keeps_no_draft(client, radiologist):
    case = case_with_images()
    reading_actions.submit_read(radiologist, case.pk, read_input(False))
    client.force_login(radiologist)
    answer = save(client, case)
    assert answer.status_code == 409 and "no longer takes your read" in answer.json()["detail"]
    assert not ReadDraft.objects.exists()
    missing = client.post(reverse("case-draft", args=[999999]), DRAFT)
    assert missing.status_code == 404 and not ReadDraft.objects.exists()


def test_no_one_else_ever_sees_a_draft(client, api, radiologist, radiologist2, auditor, admin_user):
    case = case_with_images(score=0.2)
    client.force_login(radiologist)
    save(client, case)

    client.force_login(radiologist2)  # another reader of the same case: an empty form
    page = client.get(reverse("case-detail", args=[case.pk]))
    assert REASON not in page.content.decode()
    assert not {k for k in DRAFT if page.context["form"].initial.get(k)}
    assert 'id="draft-restored" role="status" hidden' in page.content.decode()

    client.force_login(auditor)
    for url in (
        reverse("case-detail", args=[case.pk]),
        reverse("audit-trail"),
        reverse("audit-trail-export"),
        reverse("audit-export", args=["cases"]),
        reverse("case-list"),
    ):
        assert REASON not in client.get(url).getvalue().decode(), url
    for user in (auditor, radiologist2):
        api.force_authenticate(user)
        body = api.get(reverse("api-case-detail", args=[case.pk])).content.decode()
        assert REASON not in body and "draft" not in body
    client.force_login(admin_user)  # the Django admin has no page for drafts
    assert "draft" not in client.get(reverse("admin:index")).content.decode().lower()
    assert client.get("/admin/screening/readdraft/").status_code == 404
    assert ReadDraft.objects.get().reader == radiologist


def test_saving_a_draft_leaves_no_audit_event(client, radiologist):
    case = case_with_images()
    client.force_login(radiologist)
    before = AuditEvent.objects.count()
    for _ in range(3):
        assert save(client, case).status_code == 200
    save(client, case, {})
    assert AuditEvent.objects.count() == before


def test_recording_the_read_deletes_the_readers_draft(client, radiologist, radiologist2):
    case = case_with_images(score=0.2)
    for reader in (radiologist, radiologist2):
        client.force_login(reader)
        save(client, case)
    reading_actions.submit_read(radiologist, case.pk, read_input(False))
    assert list(ReadDraft.objects.values_list("reader", flat=True)) == [radiologist2.pk]


def test_the_case_closing_deletes_every_draft_of_it(client, radiologist, radiologist2):
    third = UserFactory(role="radiologist", username="rad3")
    case = case_with_images(score=0.2)
    reading_actions.submit_read(radiologist, case.pk, read_input(False))
    for reader in (radiologist2, third):  # both could give the second read
        client.force_login(reader)
        assert save(client, case).status_code == 200
    reading_actions.submit_read(radiologist2, case.pk, read_input(False, ReadKind.SECOND))
    case.refresh_from_db()
    assert case.status == CaseStatus.CLOSED
    assert not ReadDraft.objects.exists()


def test_stay_signed_in_moves_the_idle_timeout_on(client, radiologist):
    client.force_login(radiologist)
    session = client.session
    session[TOUCHED] = int(time.time()) - 600  # ten minutes idle
    session.save()
    row = Session.objects.get(session_key=session.session_key)
    row.expire_date = timezone.now() + timedelta(seconds=60)
    row.save()

    answer = client.post(reverse("stay-signed-in"))
    assert answer.status_code == 200
    assert (
        settings.SESSION_COOKIE_AGE - 2
        <= answer.json()["expires_in"]
        <= settings.SESSION_COOKIE_AGE
    )
    left = Session.objects.get(session_key=session.session_key).expire_date - timezone.now()
    assert left.total_seconds() > settings.SESSION_COOKIE_AGE - 10


def test_the_case_page_tells_its_script_when_the_session_ends(client, radiologist):
    case = case_with_images()
    client.force_login(radiologist)
    page = client.get(reverse("case-detail", args=[case.pk]))
    timer = page.context["session_timer"]
    assert timer["warn"] == settings.SESSION_WARN_SECONDS
    assert settings.SESSION_COOKIE_AGE - settings.SESSION_TOUCH_SECONDS <= timer["expires_in"]
    assert f'data-expires-in="{timer["expires_in"]}"' in page.content.decode()


# --- A read sent after the session ended --------------------------------------------------


def opened_form(client, reader, case) -> dict:
    """The read form as the reader's page holds it, before the session ends."""
    client.force_login(reader)
    initial = form_of(client, case)
    return {"kind": initial["kind"], "opened": initial["opened"], **DRAFT}


def end_session(client) -> None:
    Session.objects.filter(session_key=client.session.session_key).delete()


def test_a_read_sent_after_sign_out_is_back_on_the_case_after_signing_in(client, radiologist):
    """Before: the POST went to the sign-in page, which said nothing, then `next` sent the
    browser to GET the POST-only /read/ address: HTTP 405, and every entry lost."""
    case = case_with_images(score=0.2)
    posted = opened_form(client, radiologist, case)
    end_session(client)

    sent = client.post(reverse("case-read", args=[case.pk]), posted)
    case_url = reverse("case-detail", args=[case.pk])
    assert sent.status_code == 302
    assert sent.url == f"{reverse('login')}?next={case_url}"
    assert not Read.objects.exists()
    login_page = client.get(sent.url).content.decode()
    assert "Your session ended before your read was recorded" in login_page

    signed_in = client.post(
        reverse("login"), {"username": "rad1", "password": PASSWORD, "next": case_url}
    )
    assert signed_in.status_code == 302 and signed_in.url == case_url
    page = client.get(case_url)
    assert page.status_code == 200
    assert {k: page.context["form"].initial[k] for k in DRAFT} == DRAFT
    assert "Your unsaved read was kept: check it and record it." in page.content.decode()

    again = {**form_of(client, case), **DRAFT, "finding_R": "asymmetry", "site_R": "UOQ"}
    again["decision"] = Decision.RECALL
    again["reason"] = REASON
    recorded = client.post(reverse("case-read", args=[case.pk]), again)
    assert recorded.status_code == 302 and recorded.url == case_url
    read = Read.objects.get()
    assert (read.birads_right, read.birads_left, read.density, read.reason) == (4, 1, "c", REASON)
    assert not ReadDraft.objects.exists()


def test_a_read_sent_after_sign_out_is_not_given_to_another_user(client, radiologist, radiologist2):
    case = case_with_images(score=0.2)
    posted = opened_form(client, radiologist, case)
    end_session(client)
    client.post(reverse("case-read", args=[case.pk]), posted)

    case_url = reverse("case-detail", args=[case.pk])
    client.post(reverse("login"), {"username": "rad2", "password": PASSWORD, "next": case_url})
    page = client.get(case_url)
    assert REASON not in page.content.decode()
    assert not {k for k in DRAFT if page.context["form"].initial.get(k)}
    assert not ReadDraft.objects.exists()
    assert "read_sent_after_signout" not in client.session


def test_a_signed_out_post_without_a_read_still_lands_on_the_case(client, radiologist):
    case = case_with_images()
    sent = client.post(reverse("case-read", args=[case.pk]), {"opened": "forged"})
    assert sent.status_code == 302 and sent.url.endswith(f"?next=/cases/{case.pk}/")
    assert "nothing was recorded" in client.get(sent.url).content.decode()
    assert "read_sent_after_signout" not in client.session


@pytest.mark.parametrize("url", ["case-draft", "case-read"])
def test_ids_beyond_the_database_range_are_not_found_nor_kept(client, radiologist, url):
    huge = "/cases/99999999999999999999999/" + url.removeprefix("case-") + "/"
    client.force_login(radiologist)
    assert client.post(huge, DRAFT).status_code == 404
    client.logout()
    assert client.post(huge, DRAFT).status_code in (302, 401, 404)


def test_nul_bytes_and_odd_text_in_a_draft_are_refused_or_kept_as_text(client, radiologist):
    case = case_with_images()
    client.force_login(radiologist)
    assert save(client, case, {"birads_right": "\x00"}).status_code == 400
    odd = "\u202eevil\u202c <b>bold</b> \x00"
    assert save(client, case, {"reason": odd}).status_code == 400
    assert save(client, case, {"reason": odd.replace("\x00", "")}).status_code == 200
    html = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
