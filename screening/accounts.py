"""Who may sign in, and with what: roles, API tokens and sign-in lockouts, each change audited.

The admin role manages accounts in the Django admin, but the app never offers what would
let an admin step outside the role model: superuser status, Django permissions, their own
roles. ``is_staff`` (entry to the Django admin) follows the admin role.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from rest_framework.authtoken.models import Token

from . import events
from .choices import Role
from .models import TokenExpiry
from .roles import AnyUser, has_role

# --- Roles --------------------------------------------------------------------------


def manages_accounts(user: AnyUser) -> bool:
    """Admins manage accounts, tokens and lockouts; so does a superuser made on the command line."""
    return bool(user.is_active and (has_role(user, Role.ADMIN) or user.is_superuser))


@dataclass(frozen=True)
class Access:
    roles: frozenset[str]
    active: bool

    def as_dict(self) -> dict[str, Any]:
        return {"roles": self.roles, "active": self.active}


def stored_access(user_id: int | None) -> Access:
    """The roles and active flag as stored now (not as cached on a user object)."""
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    if user is None:
        return Access(frozenset(), False)
    roles = user.groups.filter(name__in=Role.values).values_list("name", flat=True)
    return Access(frozenset(roles), user.is_active)


def record_access_change(actor: User, user: User, before: Access | None) -> None:
    """After an account was saved: refuse a change to one's own roles, let ``is_staff`` follow
    the admin role, and audit what changed (``before`` is None for a new account).

    Call inside the transaction that saved the account, so a refusal undoes the save.
    """
    after = stored_access(user.pk)
    created = before is None
    before = before or Access(frozenset(), False)
    if actor.pk == user.pk and after.roles != before.roles:
        raise PermissionDenied("You cannot change your own roles.")
    staff = Role.ADMIN in after.roles or user.is_superuser
    if user.is_staff != staff:
        get_user_model().objects.filter(pk=user.pk).update(is_staff=staff)
        user.is_staff = staff
    if created or after != before:
        events.roles_changed(actor, user, before.as_dict(), after.as_dict(), created=created)


# --- API tokens ---------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    key: str  # shown to the admin once, never logged or audited
    expires_at: dt.datetime


def token_expires_at(token: Token) -> dt.datetime:
    """The expiry an admin gave the token, or ``API_TOKEN_DAYS`` after it was made elsewhere."""
    expiry = TokenExpiry.objects.filter(token_id=token.pk).values_list("expires_at", flat=True)
    return expiry.first() or token.created + dt.timedelta(days=settings.API_TOKEN_DAYS)


def token_expired(token: Token) -> bool:
    return token_expires_at(token) <= timezone.now()


def issue_token(actor: User, user: User, days: int) -> IssuedToken:
    """A new token for ``user``, valid ``days`` days; a token they held is replaced."""
    if not 1 <= days <= settings.API_TOKEN_MAX_DAYS:
        raise ValueError(f"A token is valid for 1 to {settings.API_TOKEN_MAX_DAYS} days.")
    with transaction.atomic():
        replaced = Token.objects.filter(user=user).delete()[0] > 0
        token = Token.objects.create(user=user)
        expires_at = timezone.now() + dt.timedelta(days=days)
        TokenExpiry.objects.create(token=token, expires_at=expires_at, issued_by=actor)
        events.token_issued(actor, user, expires_at, replaced)
    return IssuedToken(token.key, expires_at)


def revoke_token(actor: User, user: User) -> bool:
    with transaction.atomic():
        revoked = Token.objects.filter(user=user).delete()[0] > 0
        if revoked:
            events.token_revoked(actor, user)
    return revoked


# --- Sign-in lockouts (django-axes) ---------------------------------------------------


class LoginThrottleBackend(AxesStandaloneBackend):
    """Refuses a sign-in while its account or its address is locked out.

    A sign-in without a request (a shell, a management command) comes from no address and
    cannot be tried over the network: it is left to the next backend.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


@receiver(user_locked_out)
def _audit_lockout(
    sender: Any, request: HttpRequest, username: str | None, ip_address: str | None, **kwargs: Any
) -> None:
    """Audit the failure that locked the account or the address, once: later refused tries
    are already audited as failed logins."""
    failures = getattr(request, "axes_failures_since_start", None)
    if failures == get_failure_limit(request, getattr(request, "axes_credentials", None)):
        events.login_locked_out(username or "", ip_address or "", failures)


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """The page a locked-out sign-in gets (429), in the site's layout."""
    cool_off = get_cool_off(request)
    minutes = int(cool_off.total_seconds() // 60) if cool_off else None
    return render(request, "registration/locked_out.html", {"minutes": minutes}, status=429)


def is_locked(attempt: AccessAttempt) -> bool:
    cool_off = get_cool_off()
    recent = cool_off is None or attempt.attempt_time > timezone.now() - cool_off
    return recent and attempt.failures_since_start >= settings.AXES_FAILURE_LIMIT


def unlock_accounts(actor: User, attempts: QuerySet[AccessAttempt]) -> int:
    """Clear every failed sign-in recorded for these attempts' usernames, from any address."""
    usernames = sorted({u for u in attempts.values_list("username", flat=True) if u})
    with transaction.atomic():
        AccessAttempt.objects.filter(username__in=usernames).delete()
        for username in usernames:
            events.login_unlocked(actor, username=username, ip_address="")
    return len(usernames)


def unlock_addresses(actor: User, attempts: QuerySet[AccessAttempt]) -> int:
    """Clear every failed sign-in recorded from these attempts' addresses, for any username."""
    addresses = sorted({a for a in attempts.values_list("ip_address", flat=True) if a})
    with transaction.atomic():
        AccessAttempt.objects.filter(ip_address__in=addresses).delete()
        for address in addresses:
            events.login_unlocked(actor, username="", ip_address=address)
    return len(addresses)


def forwarded_client_address(request: HttpRequest) -> str | None:
    """Behind the TLS proxy every request comes from the proxy: lock the address it saw (the
    last hop it added to X-Forwarded-For), or one lockout would shut everyone out."""
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for candidate in (hops[-1], request.META.get("REMOTE_ADDR", "")):
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None
