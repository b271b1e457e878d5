"""Sign-in throttling: repeated failures lock the account and the address; admins unlock."""

from __future__ import annotations

import datetime as dt

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import authenticate
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from screening import accounts
from screening.choices import AuditAction
from screening.models import AuditEvent

GOOD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def low_limits(settings):  # type: ignore[no-untyped-def]
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = 0.25  # hours: 15 minutes


def sign_in(client, username: str, password: str, address: str = "10.0.0.1"):  # type: ignore[no-untyped-def]
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address
    )


def signed_in(client) -> bool:  # type: ignore[no-untyped-def]
    return "_auth_user_id" in client.session


def test_repeated_wrong_passwords_lock_the_account_with_a_clear_page(client, radiologist):  # type: ignore[no-untyped-def]
    assert sign_in(client, "rad1", "wrong").status_code == 200
    assert sign_in(client, "rad1", "wrong").status_code == 200
    locked = sign_in(client, "rad1", "wrong")
    assert locked.status_code == 429
    assert "Sign-in locked" in locked.content.decode()
    assert "15 minutes" in locked.content.decode()
    # The right password from another address does not get in while the account is locked.
    assert sign_in(client, "rad1", GOOD, address="10.0.0.2").status_code == 429
    assert not signed_in(client)


def test_failures_and_the_lockout_are_audited(client, radiologist):  # type: ignore[no-untyped-def]
    for _ in range(4):
        sign_in(client, "rad1", "wrong")
    assert AuditEvent.objects.filter(action=AuditAction.LOGIN_FAILED).count() == 4
    lockout = AuditEvent.objects.get(action=AuditAction.LOGIN_LOCKED_OUT)
    assert lockout.actor_name == "rad1"
    assert lockout.detail == {"ip_address": "10.0.0.1", "failures": 3}


def test_failures_from_one_address_lock_it_for_every_account(client, radiologist):  # type: ignore[no-untyped-def]
    for name in ("ghost1", "ghost2", "ghost3"):
        sign_in(client, name, "guess")
    assert sign_in(client, "rad1", GOOD).status_code == 429
    assert sign_in(client, "rad1", GOOD, address="10.0.0.9").status_code == 302


def test_a_lockout_ends_after_the_cool_off(client, radiologist):  # type: ignore[no-untyped-def]
    for _ in range(3):
        sign_in(client, "rad1", "wrong")
    AccessAttempt.objects.update(attempt_time=timezone.now() - dt.timedelta(minutes=16))
    assert sign_in(client, "rad1", GOOD).status_code == 302


def test_an_admin_unlocks_an_account_and_it_is_audited(client, radiologist, admin_user):  # type: ignore[no-untyped-def]
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        sign_in(client, "rad1", "wrong", address=address)
    admin = client.__class__()
    admin.force_login(admin_user)
    changelist = reverse("admin:axes_accessattempt_changelist")
    assert admin.get(changelist).status_code == 200
    one_row = AccessAttempt.objects.filter(ip_address="10.0.0.1").values_list("pk", flat=True)
    response = admin.post(
        changelist, {"action": "unlock_accounts", "_selected_action": list(one_row)}
    )
    assert response.status_code == 302
    assert not AccessAttempt.objects.exists()
    event = AuditEvent.objects.get(action=AuditAction.LOGIN_UNLOCKED)
    assert (event.actor_id, event.detail) == (
        admin_user.pk,
        {"username": "rad1", "ip_address": ""},
    )
    assert sign_in(client, "rad1", GOOD).status_code == 302


def test_an_admin_unlocks_an_address(client, admin_user):  # type: ignore[no-untyped-def]
    for name in ("ghost1", "ghost2", "ghost3"):
        sign_in(client, name, "guess", address="10.0.0.7")
    accounts.unlock_addresses(admin_user, AccessAttempt.objects.filter(username="ghost1"))
    assert not AccessAttempt.objects.filter(ip_address="10.0.0.7").exists()
    event = AuditEvent.objects.get(action=AuditAction.LOGIN_UNLOCKED)
    assert event.detail == {"username": "", "ip_address": "10.0.0.7"}


def test_only_admins_see_the_lockouts(client, auditor):  # type: ignore[no-untyped-def]
    auditor.is_staff = True
    auditor.save()
    client.force_login(auditor)
    assert client.get(reverse("admin:axes_accessattempt_changelist")).status_code == 403


def test_a_success_clears_earlier_failures(client, radiologist):  # type: ignore[no-untyped-def]
    sign_in(client, "rad1", "wrong")
    sign_in(client, "rad1", "wrong")
    assert sign_in(client, "rad1", GOOD).status_code == 302
    client.logout()
    sign_in(client, "rad1", "wrong")
    assert sign_in(client, "rad1", GOOD).status_code == 302


def test_a_sign_in_without_a_request_is_not_throttled(radiologist):  # type: ignore[no-untyped-def]
    """Management commands and the shell authenticate without a request."""
    assert authenticate(username="rad1", password=GOOD) == radiologist


def test_behind_the_proxy_the_address_is_the_one_the_proxy_saw():  # type: ignore[no-untyped-def]
    request = RequestFactory().get(
        "/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9", REMOTE_ADDR="10.0.0.254"
    )
    assert accounts.forwarded_client_address(request) == "203.0.113.9"
    garbled = RequestFactory().get("/", HTTP_X_FORWARDED_FOR="nonsense", REMOTE_ADDR="10.0.0.254")
    assert accounts.forwarded_client_address(garbled) == "10.0.0.254"
