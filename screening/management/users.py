"""Who a management command acts as: its rows and audit events need a real admin."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.base import CommandError

from ..choices import Role


def admin_named(username: str) -> User:
    user = get_user_model().objects.filter(username=username, groups__name=Role.ADMIN).first()
    if user is None:
        raise CommandError(f"No admin user called {username}.")
    return user
