"""Role checks shared by every page and API endpoint: a user's roles are their groups, less
any a second admin has yet to confirm (``models.PendingRole``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group, User
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from .choices import Role
from .models import PendingRole

# Who reads cases, and who may view one (its films, heatmaps and exports).
READERS = (Role.RADIOLOGIST, Role.ARBITRATOR)
CLINICAL_VIEWERS = (*READERS, Role.AUDITOR)

AnyUser = User | AnonymousUser


class AuthenticatedHttpRequest(HttpRequest):
    """A page request: ``PagesLoginRequiredMiddleware`` has turned anonymous users away,
    so its user is signed in. An annotation only; no request is ever built from it."""

    user: User


class AuthenticatedRequest(Request):
    """An API request past ``IsAuthenticated`` (the default permission): a signed-in user."""

    user: User


def signed_in(request: HttpRequest) -> User:
    """The user of a request behind a sign-in check (the admin site, the login middleware),
    as a ``User``; a request that somehow got past without one is refused."""
    if not isinstance(request.user, User):
        raise PermissionDenied("Sign in first.")
    return request.user


def roles_of(user: AnyUser) -> frozenset[str]:
    if not user.is_authenticated:
        return frozenset()
    cached = getattr(user, "_screening_roles", None)
    if cached is None:
        pending = PendingRole.objects.filter(user_id=user.pk).values("role")
        held = user.groups.filter(name__in=Role.values).exclude(name__in=pending)
        cached = frozenset(held.values_list("name", flat=True))
        # Cached on the user object, which lives as long as the request.
        user._screening_roles = cached  # type: ignore[attr-defined]
    return cached


def pending_roles_of(user: AnyUser) -> list[str]:
    """The roles this user holds that a second admin has yet to confirm."""
    if not user.is_authenticated:
        return []
    return sorted(PendingRole.objects.filter(user_id=user.pk).values_list("role", flat=True))


def holders(*roles: str) -> QuerySet[User]:
    """Active users holding one of ``roles`` in force (not waiting for a second admin): the
    query twin of ``has_role``."""
    waiting = PendingRole.objects.filter(user=OuterRef(OuterRef("pk"))).values("role")
    held = Group.objects.filter(user=OuterRef("pk"), name__in=roles).exclude(name__in=waiting)
    return get_user_model().objects.filter(Exists(held), is_active=True)


@dataclass(frozen=True)
class Person:
    """Who is asking: a user id and their roles (what the reading pathway decides on)."""

    id: int
    roles: frozenset[str]


def person(user: User) -> Person:
    """The user as the reading pathway sees them: an id and roles."""
    return Person(id=user.pk, roles=roles_of(user))


def has_role(user: AnyUser, *roles: str) -> bool:
    return bool(roles_of(user) & set(roles))


def role_required(*roles: str) -> Callable:
    """Page decorator: 403 for any signed-in user without one of ``roles``."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not has_role(request.user, *roles):
                raise PermissionDenied("Your role does not allow this page.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def api_role(*roles: str) -> type[BasePermission]:
    """DRF permission class allowing authenticated users holding one of ``roles``."""

    class HasRole(BasePermission):
        message = "Your role does not allow this endpoint."

        def has_permission(self, request, view) -> bool:
            return bool(request.user and request.user.is_authenticated) and has_role(
                request.user, *roles
            )

    HasRole.__name__ = "HasRole_" + "_".join(roles)
    return HasRole
