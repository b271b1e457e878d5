"""API tokens: admins issue (key shown once, to whoever will use it) and revoke them, with an
expiry; all audited. A token for someone else is confirmed by its holder (test_access_two_person)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from screening import accounts
from screening.choices import AuditAction
from screening.models import AuditEvent, TokenExpiry

API_URL = "/api/model-versions/"


def issued_for(admin, user, days: int) -> str:
    """A token an admin issued for ``user`` and ``user`` confirmed: its key."""
    accounts.issue_token(admin, user, days)
    return accounts.confirm_token(user).key


def call_api(api, key: str):
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api.get(API_URL)


def test_an_admin_issues_their_own_token_whose_key_is_shown_once(client, admin_user, auditor):
    client.force_login(admin_user)
    assert client.get(reverse("admin:screening_apitoken_add")).status_code == 200
    response = client.post(
        reverse("admin:screening_apitoken_add"), {"user": admin_user.pk, "days": 30}
    )
    assert response.status_code == 200
    token = Token.objects.get(user=admin_user)
    assert token.key in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    expiry = TokenExpiry.objects.get(token=token)
    assert abs(expiry.expires_at - (timezone.now() + dt.timedelta(days=30))) < dt.timedelta(
        minutes=1
    )
    issued_for(admin_user, auditor, 5)
    for page in (
        reverse("admin:screening_apitoken_changelist"),
        reverse("admin:screening_apitoken_change", args=[admin_user.pk]),
        reverse("admin:screening_apitoken_delete", args=[admin_user.pk]),
        reverse("admin:screening_apitoken_change", args=[auditor.pk]),
    ):
        shown = client.get(page)
        content = shown.content.decode()
        assert shown.status_code == 200 and token.key not in content, page
        assert Token.objects.get(user=auditor).key not in content, page


def test_issuing_a_token_is_audited_without_its_key(admin_user, auditor):
    issued = accounts.issue_token(admin_user, admin_user, 7)
    accounts.issue_token(admin_user, auditor, 7)
    own, offered = AuditEvent.objects.filter(action=AuditAction.TOKEN_ISSUED).order_by("pk")
    assert (own.actor_id, own.object_id) == (admin_user.pk, str(admin_user.pk))
    assert own.detail["replaced"] is False and own.detail["pending"] is False
    assert (offered.object_id, offered.detail["pending"]) == (str(auditor.pk), True)
    assert offered.detail["expires_at"] is None
    assert isinstance(issued, accounts.IssuedToken)
    assert issued.key not in str(own.detail)
    key = accounts.confirm_token(auditor).key
    confirmed = AuditEvent.objects.get(action=AuditAction.TOKEN_CONFIRMED)
    assert confirmed.detail["issued_by_id"] == admin_user.pk and key not in str(confirmed.detail)


def test_an_issued_token_works_until_it_expires(api, admin_user, auditor):
    key = issued_for(admin_user, auditor, 1)
    assert call_api(api, key).status_code == 200
    TokenExpiry.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    response = call_api(api, key)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_a_token_made_outside_the_admin_expires_after_the_default_lifetime(api, auditor, settings):
    settings.API_TOKEN_DAYS = 90
    token = Token.objects.create(user=auditor)
    assert call_api(api, token.key).status_code == 200
    Token.objects.filter(pk=token.pk).update(created=timezone.now() - dt.timedelta(days=91))
    assert call_api(api, token.key).status_code == 401


def test_a_confirmed_reissue_replaces_the_old_token(api, admin_user, auditor):
    old = issued_for(admin_user, auditor, 5)
    new = issued_for(admin_user, auditor, 5)
    assert call_api(api, old).status_code == 401
    assert call_api(api, new).status_code == 200
    confirmed = AuditEvent.objects.filter(action=AuditAction.TOKEN_CONFIRMED).first()
    assert confirmed is not None and confirmed.detail["replaced"]


def test_revoking_a_token_in_the_admin_stops_it_and_is_audited(client, api, admin_user, auditor):
    key = issued_for(admin_user, auditor, 5)
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:screening_apitoken_delete", args=[auditor.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not Token.objects.filter(user=auditor).exists()
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_REVOKED)
    assert (event.actor_id, event.detail) == (admin_user.pk, {"user_id": auditor.pk})
    assert call_api(api, key).status_code == 401


def test_a_token_lasts_at_most_the_longest_lifetime(client, admin_user, auditor, settings):
    settings.API_TOKEN_MAX_DAYS = 30
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:screening_apitoken_add"), {"user": auditor.pk, "days": 31}
    )
    assert response.status_code == 200 and not Token.objects.exists()
    with pytest.raises(ValueError):
        accounts.issue_token(admin_user, auditor, 31)


@pytest.mark.parametrize("role", ["auditor", "radiologist", "roleless"])
def test_only_admins_reach_the_token_admin(client, request, role):
    user = request.getfixturevalue(role)
    user.is_staff = True  # even with the admin site open to them
    user.save()
    client.force_login(user)
    assert client.get(reverse("admin:screening_apitoken_add")).status_code == 403
