"""Two people for clinical power: an admin cannot act clinically through an account or a token.

A clinical role (or the admin role, which confirms them) given by an admin, or held by an
account whose password an admin set, gives nothing until a second admin confirms it; a token
an admin issues for someone else has no key until its holder signs in and confirms it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from screening import accounts
from screening.choices import AuditAction, Role
from screening.models import AuditEvent, PendingRole, PendingToken, TokenExpiry
from screening.reading import queries
from screening.roles import roles_of
from tests.factories import UserFactory, case_with_images

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

PASSWORD = "a-long-enough-passphrase-9"
API_URL = "/api/cases/"


@pytest.fixture
def account_admin(admin_user):
    admin_user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="auth", content_type__model__in=["user", "group"]
        )
    )
    return admin_user


@pytest.fixture
def second_admin(db):
    return UserFactory(role=Role.ADMIN, username="admin2")


def role_ids(*names: str) -> list[int]:
    return [Group.objects.get_or_create(name=n)[0].pk for n in names]


def create_account(admin_client: Client, username: str, *roles: str):
    response = admin_client.post(
        reverse("admin:auth_user_add"),
        {
            "username": username,
            "usable_password": "true",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "groups": role_ids(*roles),
        },
    )
    assert response.status_code == 302, response.content[:500]
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=username)


def signed_in_as(username: str, password: str = PASSWORD) -> Client:
    """A real sign-in through the login page, as the person (or whoever knows the password)."""
    browser = Client()
    response = browser.post(reverse("login"), {"username": username, "password": password})
    assert response.status_code == 302, response.content[:500]
    return browser


def logged_in(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


def confirm_in_admin(admin_client: Client, user: User) -> TestResponse:
    rows = list(PendingRole.objects.filter(user=user).values_list("pk", flat=True))
    return admin_client.post(
        reverse("admin:screening_pendingrole_changelist"),
        {"action": "confirm", "_selected_action": rows},
        follow=True,
    )


# --- Roles ----------------------------------------------------------------------------


def test_an_admin_cannot_act_clinically_through_an_account_they_create(account_admin):
    create_account(logged_in(account_admin), "rad9", Role.RADIOLOGIST)
    as_rad9 = signed_in_as("rad9")
    assert as_rad9.get(reverse("worklist")).status_code == 403
    assert as_rad9.get(API_URL).status_code == 403
    page = as_rad9.get(reverse("account")).content.decode()
    assert "waits for a second admin" in page


def test_a_second_admin_confirms_the_role_and_it_is_audited(account_admin, second_admin):
    rad9 = create_account(logged_in(account_admin), "rad9", Role.RADIOLOGIST)
    response = confirm_in_admin(logged_in(second_admin), rad9)
    assert response.status_code == 200
    assert not PendingRole.objects.exists()
    assert signed_in_as("rad9").get(reverse("worklist")).status_code == 200
    event = AuditEvent.objects.get(action=AuditAction.ROLE_CONFIRMED)
    assert (event.actor_id, event.object_id) == (second_admin.pk, str(rad9.pk))
    assert event.detail == {
        "user_id": rad9.pk,
        "role": Role.RADIOLOGIST,
        "granted_by_id": account_admin.pk,
        "reason": "granted",
    }


def test_the_granting_admin_cannot_confirm_their_own_grant(account_admin):
    admin_client = logged_in(account_admin)
    rad9 = create_account(admin_client, "rad9", Role.RADIOLOGIST)
    response = confirm_in_admin(admin_client, rad9)
    assert "another admin must confirm" in response.content.decode()
    assert PendingRole.objects.filter(user=rad9).exists()
    assert Role.RADIOLOGIST not in roles_of(rad9)
    assert not AuditEvent.objects.filter(action=AuditAction.ROLE_CONFIRMED).exists()


def test_nobody_confirms_their_own_pending_role(account_admin, second_admin):
    rad9 = create_account(logged_in(account_admin), "rad9", Role.RADIOLOGIST, Role.ADMIN)
    confirmed, refused = accounts.confirm_roles(rad9, PendingRole.objects.filter(user=rad9))
    assert confirmed == 0 and refused
    assert PendingRole.objects.filter(user=rad9).count() == 2


def test_the_admin_role_an_admin_gives_waits_too(account_admin):
    """Otherwise one admin could make a second admin and confirm their own grants with it."""
    admin_client = logged_in(account_admin)
    create_account(admin_client, "sock", Role.ADMIN)
    create_account(admin_client, "rad9", Role.RADIOLOGIST)
    as_sock = signed_in_as("sock")
    assert as_sock.get(reverse("admin:screening_pendingrole_changelist")).status_code == 403
    rad9_rows = list(PendingRole.objects.filter(user__username="rad9").values_list("pk", flat=True))
    as_sock.post(
        reverse("admin:screening_pendingrole_changelist"),
        {"action": "confirm", "_selected_action": rad9_rows},
    )
    assert PendingRole.objects.filter(user__username="rad9").exists()


def test_a_second_admin_refuses_a_role_and_it_is_removed(account_admin, second_admin):
    rad9 = create_account(logged_in(account_admin), "rad9", Role.RADIOLOGIST)
    rows = list(PendingRole.objects.filter(user=rad9).values_list("pk", flat=True))
    logged_in(second_admin).post(
        reverse("admin:screening_pendingrole_changelist"),
        {"action": "refuse", "_selected_action": rows},
    )
    assert not rad9.groups.exists() and not PendingRole.objects.exists()
    event = AuditEvent.objects.get(action=AuditAction.ROLE_REFUSED)
    assert (event.actor_id, event.detail["role"]) == (second_admin.pk, Role.RADIOLOGIST)


def test_an_admin_setting_a_readers_password_puts_their_roles_on_hold(
    account_admin, second_admin, radiologist
):
    response = logged_in(account_admin).post(
        reverse("admin:auth_user_password_change", args=[radiologist.pk]),
        {"usable_password": "true", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    as_rad1 = signed_in_as("rad1")
    assert as_rad1.get(reverse("worklist")).status_code == 403
    pending = PendingRole.objects.get(user=radiologist)
    assert (pending.granted_by_id, pending.reason) == (account_admin.pk, "password_set")
    confirm_in_admin(logged_in(second_admin), radiologist)
    assert signed_in_as("rad1").get(reverse("worklist")).status_code == 200


def test_roles_given_on_the_command_line_act_at_once(db):
    """bootstrap_demo and the factories add groups directly: the install-time path."""
    user = UserFactory(role=Role.RADIOLOGIST, username="radcli")
    assert roles_of(user) == {Role.RADIOLOGIST}


def test_the_command_line_confirms_for_a_single_admin_install(account_admin, capsys):
    rad9 = create_account(logged_in(account_admin), "rad9", Role.RADIOLOGIST)
    call_command("confirm_roles", "rad9")
    assert "radiologist" in capsys.readouterr().out
    assert not PendingRole.objects.exists()
    assert signed_in_as("rad9").get(reverse("worklist")).status_code == 200
    event = AuditEvent.objects.get(action=AuditAction.ROLE_CONFIRMED)
    assert event.actor_id is None and event.actor_name == "command line"
    assert event.object_id == str(rad9.pk)


def test_a_pending_admin_role_shows_no_admin_pages(account_admin):
    create_account(logged_in(account_admin), "admin9", Role.ADMIN)
    as_admin9 = signed_in_as("admin9")
    assert as_admin9.get(reverse("admin:auth_user_changelist")).status_code == 403
    assert as_admin9.get(reverse("upload")).status_code == 403


def test_a_reader_whose_role_waits_is_not_counted_as_an_arbitrator(account_admin, second_admin):
    case = case_with_images(images=1)
    UserFactory(role=Role.ARBITRATOR, username="arb1")
    create_account(logged_in(account_admin), "arb9", Role.ARBITRATOR)
    assert queries.eligible_arbitrators(case) == 1
    confirm_in_admin(logged_in(second_admin), PendingRole.objects.get().user)
    assert queries.eligible_arbitrators(case) == 2


# --- Tokens ---------------------------------------------------------------------------


def issue_in_admin(admin_client: Client, user, days: int = 30):
    response = admin_client.post(
        reverse("admin:screening_apitoken_add"), {"user": user.pk, "days": days}
    )
    assert response.status_code == 200
    return response


def keys_in(html: str) -> set[str]:
    return set(re.findall(r"\b[0-9a-f]{40}\b", html))


def test_an_admin_never_sees_a_key_issued_for_someone_else(client, admin_user, radiologist):
    client.force_login(admin_user)
    response = issue_in_admin(client, radiologist)
    assert not Token.objects.filter(user=radiologist).exists()
    assert keys_in(response.content.decode()) == set()
    assert "confirms it" in response.content.decode()
    pending = PendingToken.objects.get(user=radiologist)
    assert (pending.issued_by_id, pending.days) == (admin_user.pk, 30)
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_ISSUED)
    assert event.detail["pending"] is True


def test_the_holder_is_told_on_their_next_page(client, admin_user, radiologist):
    accounts.issue_token(admin_user, radiologist, 30)
    page = logged_in(radiologist).get(reverse("worklist")).content.decode()
    assert "An API token was issued for you by admin1" in page
    assert reverse("account") in page


def test_the_holder_confirms_and_sees_the_key_once(api, admin_user, radiologist):
    accounts.issue_token(admin_user, radiologist, 30)
    holder = logged_in(radiologist)
    response = holder.post(reverse("account"), {"token": "confirm"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = Token.objects.get(user=radiologist)
    assert keys_in(response.content.decode()) == {token.key}
    assert TokenExpiry.objects.get(token=token).issued_by_id == admin_user.pk
    assert not PendingToken.objects.exists()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get(API_URL).status_code == 200
    assert token.key not in holder.get(reverse("account")).content.decode()
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_CONFIRMED)
    assert (event.actor_id, event.detail["issued_by_id"]) == (radiologist.pk, admin_user.pk)


def test_a_new_token_leaves_the_old_one_working_until_the_holder_confirms(
    api, admin_user, radiologist
):
    old = Token.objects.create(user=radiologist).key
    accounts.issue_token(admin_user, radiologist, 30)
    api.credentials(HTTP_AUTHORIZATION=f"Token {old}")
    assert api.get(API_URL).status_code == 200
    page = logged_in(radiologist).get(reverse("account")).content.decode()
    assert "your current token stops working" in page
    logged_in(radiologist).post(reverse("account"), {"token": "confirm"})
    assert api.get(API_URL).status_code == 401


def test_the_holder_refuses_a_token(api, admin_user, radiologist):
    old = Token.objects.create(user=radiologist).key
    accounts.issue_token(admin_user, radiologist, 30)
    response = logged_in(radiologist).post(reverse("account"), {"token": "refuse"})
    assert response.status_code == 302
    assert not PendingToken.objects.exists()
    assert Token.objects.get(user=radiologist).key == old
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_REFUSED)
    assert (event.actor_id, event.detail["issued_by_id"]) == (radiologist.pk, admin_user.pk)


def test_the_holder_revokes_their_own_token(api, radiologist):
    key = Token.objects.create(user=radiologist).key
    logged_in(radiologist).post(reverse("account"), {"token": "revoke"})
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get(API_URL).status_code == 401
    assert AuditEvent.objects.get(action=AuditAction.TOKEN_REVOKED).actor_id == radiologist.pk


def test_nothing_to_confirm_is_said_plainly(radiologist):
    response = logged_in(radiologist).post(reverse("account"), {"token": "confirm"})
    assert response.status_code == 409
    assert not Token.objects.exists()


def test_an_admins_own_token_is_shown_to_them_at_once(client, api, admin_user):
    client.force_login(admin_user)
    response = issue_in_admin(client, admin_user)
    token = Token.objects.get(user=admin_user)
    assert keys_in(response.content.decode()) == {token.key}
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get("/api/model-versions/").status_code == 200
