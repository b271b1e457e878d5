"""Role checks shared by every page and API endpoint: a user's roles are their groups."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from rest_framework.permissions import BasePermission

from .choices import Role
from .pathway import Person

User = AbstractBaseUser | AnonymousUser


def roles_of(user: User) -> frozenset[str]:
    if not user.is_authenticated:
        return frozenset()
    cached = getattr(user, "_screening_roles", None)
    if cached is None:
        cached = frozenset(user.groups.filter(name__in=Role.values).values_list("name", flat=True))
        user._screening_roles = cached  # type: ignore[union-attr]
    return cached


def person(user: AbstractBaseUser) -> Person:
    """The user as the reading pathway sees them: an id and roles."""
    return Person(id=user.pk, roles=roles_of(user))


def has_role(user: User, *roles: str) -> bool:
    return bool(roles_of(user) & set(roles))


def role_required(*roles: str) -> Callable:
    """Page decorator: 403 for any signed-in user without one of ``roles``."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not has_role(request.user, *roles):
                raise PermissionDenied("Your role does not allow this page.")
            return view(request, *args, **kwargs)

        wrapped.allowed_roles = roles  # type: ignore[attr-defined]
        return wrapped

    return decorator


def api_role(*roles: str) -> type[BasePermission]:
    """DRF permission class allowing authenticated users holding one of ``roles``."""

    class HasRole(BasePermission):
        message = "Your role does not allow this endpoint."

        def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
            return bool(request.user and request.user.is_authenticated) and has_role(
                request.user, *roles
            )

    HasRole.__name__ = "HasRole_" + "_".join(roles)
    return HasRole
