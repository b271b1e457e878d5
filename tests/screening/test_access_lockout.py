"""Sign-in throttling: repeated failures lock the pair (account, address), for longer each time;
admins unlock. Nobody can lock a colleague out from another address."""

from __future__ import annotations

import datetime as dt
from typing import Any

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
def low_limits(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.LOGIN_LOCKOUT_MINUTES = 15
    settings.LOGIN_LOCKOUT_MAX_MINUTES = 120


def sign_in(client, username: str, password: str, address: str = "10.0.0.1"):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address
    )


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_repeated_wrong_passwords_lock_the_account_with_a_clear_page(client, radiologist):
    assert sign_in(client, "rad1", "wrong").status_code == 200
    assert sign_in(client, "rad1", "wrong").status_code == 200
    locked = sign_in(client, "rad1", "wrong")
    assert locked.status_code == 429
    assert "Sign-in locked" in locked.content.decode()
    assert "15 minutes" in locked.content.decode()
    # The right password from the same address does not get in while the pair is locked.
    assert sign_in(client, "rad1", GOOD).status_code == 429
    assert not signed_in(client)


def test_an_account_locked_from_one_address_still_signs_in_from_another(client, radiologist):
    """Someone guessing a colleague's password elsewhere cannot lock the colleague out."""
    for _ in range(5):
        sign_in(client, "rad1", "wrong", address="10.6.6.6")
    assert sign_in(client, "rad1", GOOD, address="10.6.6.6").status_code == 429
    assert sign_in(client, "rad1", GOOD, address="10.0.0.2").status_code == 302
    assert signed_in(client)


def test_failures_and_the_lockout_are_audited(client, radiologist):
    for _ in range(4):
        sign_in(client, "rad1", "wrong")
    assert AuditEvent.objects.filter(action=AuditAction.LOGIN_FAILED).count() == 4
    lockout = AuditEvent.objects.get(action=AuditAction.LOGIN_LOCKED_OUT)
    assert lockout.actor_name == "rad1"
    assert lockout.detail == {"ip_address": "10.0.0.1", "failures": 3}


def test_failures_from_one_address_do_not_lock_other_accounts_there(client, radiologist):
    """Colleagues behind one address (a ward's proxy) are not locked by one guesser."""
    for name in ("ghost1", "ghost2", "ghost3"):
        for _ in range(3):
            sign_in(client, name, "guess")
    assert sign_in(client, "ghost1", "guess").status_code == 429
    assert sign_in(client, "rad1", GOOD).status_code == 302


def ago(minutes: float) -> None:
    """Move every recorded failure ``minutes`` into the past."""
    AccessAttempt.objects.update(attempt_time=timezone.now() - dt.timedelta(minutes=minutes))


def test_each_further_lockout_of_the_pair_lasts_twice_as_long(client, radiologist):
    for _ in range(3):
        sign_in(client, "rad1", "wrong")
    ago(16)
    # The first lockout is over; one more wrong try locks the pair again, for 30 minutes.
    assert sign_in(client, "rad1", "wrong").status_code == 429
    ago(16)
    assert sign_in(client, "rad1", GOOD).status_code == 429
    ago(31)
    assert sign_in(client, "rad1", "wrong").status_code == 429  # and now for 60
    ago(45)
    locked = sign_in(client, "rad1", GOOD)
    assert locked.status_code == 429
    assert "15 minutes" in locked.content.decode()  # what is left of the hour
    ago(61)
    assert sign_in(client, "rad1", GOOD).status_code == 302


def test_the_delay_stops_growing_at_its_cap(client, radiologist, settings):
    settings.LOGIN_LOCKOUT_MAX_MINUTES = 30
    for _ in range(3):
        sign_in(client, "rad1", "wrong")
    for _ in range(4):
        ago(31)
        assert sign_in(client, "rad1", "wrong").status_code == 429
    ago(31)
    assert sign_in(client, "rad1", GOOD).status_code == 302


def test_tries_while_locked_neither_count_nor_extend_the_lockout(client, radiologist):
    for _ in range(3):
        sign_in(client, "rad1", "wrong")
    ago(10)
    before = AccessAttempt.objects.values_list("failures_since_start", "attempt_time").get()
    for _ in range(5):
        assert sign_in(client, "rad1", "wrong").status_code == 429
    assert AccessAttempt.objects.values_list("failures_since_start", "attempt_time").get() == before
    ago(16)
    assert sign_in(client, "rad1", GOOD).status_code == 302


def test_every_lockout_is_audited_once(client, radiologist):
    for _ in range(5):
        sign_in(client, "rad1", "wrong")
    ago(16)
    sign_in(client, "rad1", "wrong")
    sign_in(client, "rad1", "wrong")
    failures = AuditEvent.objects.filter(action=AuditAction.LOGIN_LOCKED_OUT).order_by("pk")
    assert [e.detail["failures"] for e in failures] == [3, 4]


def test_a_lockout_ends_after_the_cool_off(client, radiologist):
    for _ in range(3):
        sign_in(client, "rad1", "wrong")
    ago(16)
    assert sign_in(client, "rad1", GOOD).status_code == 302


def test_an_admin_unlocks_an_account_and_it_is_audited(client, radiologist, admin_user):
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


def test_an_admin_unlocks_an_address(client, admin_user):
    for name in ("ghost1", "ghost2", "ghost3"):
        for _ in range(3):
            sign_in(client, name, "guess", address="10.0.0.7")
    accounts.unlock_addresses(admin_user, AccessAttempt.objects.filter(username="ghost1"))
    assert not AccessAttempt.objects.filter(ip_address="10.0.0.7").exists()
    event = AuditEvent.objects.get(action=AuditAction.LOGIN_UNLOCKED)
    assert event.detail == {"username": "", "ip_address": "10.0.0.7"}


def test_only_admins_see_the_lockouts(client, auditor):
    auditor.is_staff = True
    auditor.save()
    client.force_login(auditor)
    assert client.get(reverse("admin:axes_accessattempt_changelist")).status_code == 403


def test_a_success_clears_earlier_failures(client, radiologist):
    sign_in(client, "rad1", "wrong")
    sign_in(client, "rad1", "wrong")
    assert sign_in(client, "rad1", GOOD).status_code == 302
    client.logout()
    sign_in(client, "rad1", "wrong")
    assert sign_in(client, "rad1", GOOD).status_code == 302


def test_a_sign_in_without_a_request_is_not_throttled(radiologist):
    """Management commands and the shell authenticate without a request."""
    assert authenticate(username="rad1", password=GOOD) == radiologist


def address_of(remote: str, forwarded: str | None = None) -> str | None:
    # WSGI environ keys, as extra keywords to the request factory
    extra: dict[str, Any] = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return accounts.client_address(RequestFactory().get("/", REMOTE_ADDR=remote, **extra))


def test_x_forwarded_for_is_ignored_unless_the_connection_is_a_trusted_proxy(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.254"]
    assert address_of("192.0.2.7", "203.0.113.9") == "192.0.2.7"
    assert address_of("127.0.0.1", "203.0.113.9") == "127.0.0.1"
    settings.TRUSTED_PROXIES = []
    assert address_of("10.0.0.254", "203.0.113.9") == "10.0.0.254"


def test_behind_a_trusted_proxy_the_address_is_the_one_it_saw(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/24", "::1"]
    # A client may write anything on the left; the proxy appends the address it saw.
    assert address_of("10.0.0.254", "6.6.6.6, 203.0.113.9") == "203.0.113.9"
    # Two proxies of ours: the first one that is not ours, read from the right.
    assert address_of("::1", "6.6.6.6, 203.0.113.9, 10.0.0.3") == "203.0.113.9"
    assert address_of("10.0.0.254", "nonsense") == "10.0.0.254"
    assert address_of("10.0.0.254") == "10.0.0.254"
    assert address_of("::ffff:10.0.0.254", "203.0.113.9") == "203.0.113.9"


def test_a_forged_header_cannot_spread_one_guesser_over_many_pairs(client, radiologist, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.254"]
    for n in range(3):
        client.post(
            reverse("login"),
            {"username": "rad1", "password": "wrong"},
            REMOTE_ADDR="192.0.2.7",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}",
        )
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"192.0.2.7"}
    assert sign_in(client, "rad1", GOOD, address="192.0.2.7").status_code == 429


def test_behind_a_trusted_proxy_one_clients_lockout_spares_another(client, radiologist, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]

    def through_proxy(client_address: str, password: str):
        return client.post(
            reverse("login"),
            {"username": "rad1", "password": password},
            REMOTE_ADDR="127.0.0.1",
            HTTP_X_FORWARDED_FOR=client_address,
        )

    for _ in range(3):
        through_proxy("198.51.100.66", "wrong")
    assert through_proxy("198.51.100.66", GOOD).status_code == 429
    assert through_proxy("203.0.113.9", GOOD).status_code == 302
    assert AccessAttempt.objects.get().ip_address == "198.51.100.66"
