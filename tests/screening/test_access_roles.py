"""Accounts in the Django admin: roles, not permissions; nobody changes their own; all audited."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from screening import accounts
from screening.choices import AuditAction, Role
from screening.models import AuditEvent
from tests.factories import UserFactory, case_with_images


@pytest.fixture
def account_admin(admin_user):
    """An admin as bootstrap_demo makes one: with Django's permissions on users and groups."""
    admin_user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="auth", content_type__model__in=["user", "group"]
        )
    )
    return admin_user


def role_ids(*names: str) -> list[int]:
    return [Group.objects.get_or_create(name=n)[0].pk for n in names]


def change(client, user, **fields):
    """Post the whole change form, as the browser would, with ``fields`` on top."""
    data = {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "09:00:00",
        "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "09:00:00",
        **fields,
    }
    return client.post(reverse("admin:auth_user_change", args=[user.pk]), data)


def test_an_admin_cannot_give_themselves_the_radiologist_role(client, account_admin):
    case = case_with_images(images=1)
    client.force_login(account_admin)
    change(client, account_admin, groups=role_ids(Role.ADMIN, Role.RADIOLOGIST), is_superuser="on")
    account_admin.refresh_from_db()
    assert set(account_admin.groups.values_list("name", flat=True)) == {Role.ADMIN}
    assert not account_admin.is_superuser
    image = case.studies.get().images.get()
    assert client.get(reverse("image-file", args=[image.pk])).status_code == 403


def test_granting_a_role_is_audited_with_ids_and_role_names(client, account_admin, roleless):
    client.force_login(account_admin)
    response = change(client, roleless, groups=role_ids(Role.RADIOLOGIST))
    assert response.status_code == 302
    event = AuditEvent.objects.get(action=AuditAction.ROLES_CHANGED)
    assert (event.actor_id, event.object_type, event.object_id) == (
        account_admin.pk,
        "user",
        str(roleless.pk),
    )
    assert event.detail == {
        "user_id": roleless.pk,
        "roles_before": [],
        "roles_after": [Role.RADIOLOGIST],
        "roles_pending": [Role.RADIOLOGIST],
        "active_before": True,
        "active_after": True,
        "created": False,
    }


def test_superuser_staff_and_permissions_are_not_offered_or_taken(client, account_admin, roleless):
    client.force_login(account_admin)
    page = client.get(reverse("admin:auth_user_change", args=[roleless.pk])).content.decode()
    for field in ("is_superuser", "is_staff", "user_permissions"):
        assert f'name="{field}"' not in page
    permission = Permission.objects.get(codename="view_image")
    change(client, roleless, is_superuser="on", is_staff="on", user_permissions=[permission.pk])
    roleless.refresh_from_db()
    assert not roleless.is_superuser and not roleless.is_staff
    assert not roleless.user_permissions.exists()


def test_only_role_groups_are_offered_as_roles(client, account_admin, roleless):
    other = Group.objects.create(name="site-managers")
    client.force_login(account_admin)
    page = client.get(reverse("admin:auth_user_change", args=[roleless.pk])).content.decode()
    assert f'value="{role_ids(Role.AUDITOR)[0]}"' in page
    assert f'value="{other.pk}"' not in page


def test_staff_access_follows_the_admin_role(client, account_admin, roleless):
    client.force_login(account_admin)
    change(client, roleless, groups=role_ids(Role.ADMIN))
    roleless.refresh_from_db()
    assert roleless.is_staff
    change(client, roleless, groups=role_ids(Role.AUDITOR))
    roleless.refresh_from_db()
    assert not roleless.is_staff


def test_a_new_account_is_audited_with_its_roles(client, account_admin):
    client.force_login(account_admin)
    response = client.post(
        reverse("admin:auth_user_add"),
        {
            "username": "rad9",
            "usable_password": "true",
            "password1": "a-long-enough-passphrase-9",
            "password2": "a-long-enough-passphrase-9",
            "groups": role_ids(Role.RADIOLOGIST),
        },
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action=AuditAction.ROLES_CHANGED)
    assert event.detail["created"] is True
    assert event.detail["roles_after"] == [Role.RADIOLOGIST]


def test_setting_someone_elses_password_is_audited(client, account_admin, radiologist):
    client.force_login(account_admin)
    response = client.post(
        reverse("admin:auth_user_password_change", args=[radiologist.pk]),
        {
            "usable_password": "true",
            "password1": "another-long-passphrase-1",
            "password2": "another-long-passphrase-1",
        },
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action=AuditAction.PASSWORD_SET)
    assert (event.actor_id, event.detail) == (account_admin.pk, {"user_id": radiologist.pk})


def test_an_admin_cannot_change_a_superusers_account(client, account_admin):
    root = UserFactory(username="root")
    root.is_superuser = True
    root.save()
    client.force_login(account_admin)
    url = reverse("admin:auth_user_password_change", args=[root.pk])
    assert client.get(url).status_code == 403


def test_django_permissions_without_the_admin_role_open_no_account(client, roleless):
    roleless.is_staff = True
    roleless.save()
    roleless.user_permissions.add(*Permission.objects.filter(content_type__app_label="auth"))
    client.force_login(roleless)
    assert client.get(reverse("admin:auth_user_changelist")).status_code == 403


def test_role_groups_cannot_be_edited_in_the_admin(client, account_admin):
    client.force_login(account_admin)
    assert client.get("/admin/auth/group/").status_code == 404


def test_the_account_verb_refuses_a_change_to_ones_own_roles(admin_user):
    before = accounts.stored_access(admin_user.pk)
    admin_user.groups.add(Group.objects.get(name=Role.RADIOLOGIST))
    with pytest.raises(PermissionDenied):
        accounts.record_access_change(admin_user, admin_user, before)
