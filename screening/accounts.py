"""Who may sign in, and with what: roles, API tokens and sign-in lockouts, each change audited.

The admin role manages accounts in the Django admin, but the app never offers what would
let an admin step outside the role model: superuser status, Django permissions, their own
roles. ``is_staff`` (entry to the Django admin) follows the admin role.

Two people for clinical power: a reading or admin role an admin gives (or holds an account
whose password an admin set) waits for a second admin (``PendingRole``), and a token an admin
issues for someone else has no key until its holder confirms it (``PendingToken``). The
command line, the install-time path, gives roles at once.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
from dataclasses import dataclass
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Max, QuerySet, Sum
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from rest_framework.authtoken.models import Token

from . import events
from .choices import SECOND_ADMIN_ROLES, PendingReason, Role
from .errors import Conflict
from .models import PendingRole, PendingToken, TokenExpiry
from .roles import AnyUser, has_role, pending_roles_of

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


def record_access_change(actor: User | None, user: User, before: Access | None) -> None:
    """After an account was saved: refuse a change to one's own roles, let ``is_staff`` follow
    the admin role, hold the reading and admin roles an admin gave for a second admin, and
    audit what changed (``before`` is None for a new account; ``actor`` None: the command line).

    Call inside the transaction that saved the account, so a refusal undoes the save.
    """
    after = stored_access(user.pk)
    created = before is None
    before = before or Access(frozenset(), False)
    if actor is not None and actor.pk == user.pk and after.roles != before.roles:
        raise PermissionDenied("You cannot change your own roles.")
    staff = Role.ADMIN in after.roles or user.is_superuser
    if user.is_staff != staff:
        get_user_model().objects.filter(pk=user.pk).update(is_staff=staff)
        user.is_staff = staff
    if actor is not None:
        _hold(actor, user, after.roles - before.roles, PendingReason.GRANTED)
    PendingRole.objects.filter(user=user).exclude(role__in=after.roles).delete()
    if created or after != before:
        events.roles_changed(
            actor,
            user,
            before.as_dict(),
            after.as_dict(),
            created=created,
            pending=pending_roles_of(user),
        )


def record_password_set(actor: User, user: User) -> None:
    """An admin set someone else's password and could now sign in as them: the account's
    reading and admin roles wait for a second admin again."""
    if actor.pk != user.pk:
        _hold(actor, user, stored_access(user.pk).roles, PendingReason.PASSWORD_SET)
    events.password_set(actor, user)


def _hold(actor: User, user: User, roles: frozenset[str], reason: str) -> None:
    for role in sorted(set(roles) & set(SECOND_ADMIN_ROLES)):
        PendingRole.objects.update_or_create(
            user=user,
            role=role,
            defaults={"granted_by": actor, "granted_at": timezone.now(), "reason": reason},
        )


def cannot_confirm(actor: User | None, pending: PendingRole) -> str | None:
    """Why ``actor`` may not confirm this role (None: they may; the command line always may)."""
    if actor is None:
        return None
    if not manages_accounts(actor):
        return "Only an admin confirms roles."
    if actor.pk == pending.user_id:
        return "Nobody confirms their own role."
    if actor.pk == pending.granted_by_id:
        return f"You gave {pending.user} the {pending.role} role: another admin must confirm it."
    return None


def confirm_roles(actor: User | None, pending: QuerySet[PendingRole]) -> tuple[int, list[str]]:
    """Put these held roles in force where ``actor`` is a second person; each one audited.
    Returns how many were confirmed and why the others were not."""
    confirmed, refused = 0, []
    for row in pending.select_related("user"):
        why = cannot_confirm(actor, row)
        if why:
            refused.append(why)
            continue
        with transaction.atomic():
            # Claimed by its deletion: two admins confirming at once confirm it once.
            if PendingRole.objects.filter(pk=row.pk).delete()[0]:
                events.role_confirmed(actor, row.user, row.role, row.granted_by_id, row.reason)
                confirmed += 1
    return confirmed, refused


def refuse_roles(actor: User, pending: QuerySet[PendingRole]) -> tuple[int, list[str]]:
    """Take these held roles away (any admin but the account holder); each one audited."""
    refused, skipped = 0, []
    for row in pending.select_related("user"):
        if actor.pk == row.user_id or not manages_accounts(actor):
            skipped.append("Nobody changes their own roles.")
            continue
        with transaction.atomic():
            if PendingRole.objects.filter(pk=row.pk).delete()[0]:
                row.user.groups.remove(*Group.objects.filter(name=row.role))
                events.role_refused(actor, row.user, row.role, row.granted_by_id)
                refused += 1
    return refused, skipped


# --- API tokens ---------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    key: str  # shown once to whoever will use it, never logged or audited
    expires_at: dt.datetime


@dataclass(frozen=True)
class OfferedToken:
    """A token issued for someone else: it has no key until they confirm it."""

    holder: User
    days: int


def token_expires_at(token: Token) -> dt.datetime:
    """The expiry an admin gave the token, or ``API_TOKEN_DAYS`` after it was made elsewhere."""
    expiry = TokenExpiry.objects.filter(token_id=token.pk).values_list("expires_at", flat=True)
    return expiry.first() or token.created + dt.timedelta(days=settings.API_TOKEN_DAYS)


def token_expired(token: Token) -> bool:
    return token_expires_at(token) <= timezone.now()


def issue_token(actor: User, user: User, days: int) -> IssuedToken | OfferedToken:
    """An admin's own token at once (replacing theirs); for anyone else an offer their holder
    confirms (``confirm_token``), their current token working until then."""
    if not 1 <= days <= settings.API_TOKEN_MAX_DAYS:
        raise ValueError(f"A token is valid for 1 to {settings.API_TOKEN_MAX_DAYS} days.")
    with transaction.atomic():
        if actor.pk == user.pk:
            issued, replaced = _new_token(user, days, issued_by=actor)
            events.token_issued(actor, user, issued.expires_at, replaced)
            return issued
        replaced = PendingToken.objects.filter(user=user).delete()[0] > 0
        PendingToken.objects.create(user=user, issued_by=actor, issued_at=timezone.now(), days=days)
        events.token_issued(actor, user, None, replaced, pending=True)
    return OfferedToken(user, days)


def _new_token(user: User, days: int, issued_by: User | None) -> tuple[IssuedToken, bool]:
    replaced = Token.objects.filter(user=user).delete()[0] > 0
    token = Token.objects.create(user=user)
    expires_at = timezone.now() + dt.timedelta(days=days)
    TokenExpiry.objects.create(token=token, expires_at=expires_at, issued_by=issued_by)
    return IssuedToken(token.key, expires_at), replaced


def token_offer(user: AnyUser) -> PendingToken | None:
    if not user.is_authenticated:
        return None
    return PendingToken.objects.select_related("issued_by").filter(user_id=user.pk).first()


def confirm_token(user: User) -> IssuedToken:
    """The holder, signed in themselves, takes the token offered to them: its key is made
    now and shown to them once; the token they held stops working."""
    with transaction.atomic():
        offer = PendingToken.objects.select_for_update().filter(user=user).first()
        if offer is None or not PendingToken.objects.filter(pk=offer.pk).delete()[0]:
            raise Conflict("No API token is waiting for you to confirm.")
        issued, replaced = _new_token(user, offer.days, issued_by=offer.issued_by)
        events.token_confirmed(user, offer.issued_by_id, issued.expires_at, replaced)
    return issued


def refuse_token(user: User) -> bool:
    """The holder turns down a token offered to them; the one they hold keeps working."""
    with transaction.atomic():
        offer = PendingToken.objects.filter(user=user).first()
        if offer is None or not PendingToken.objects.filter(pk=offer.pk).delete()[0]:
            return False
        events.token_refused(user, offer.issued_by_id)
    return True


def revoke_token(actor: User, user: User) -> bool:
    with transaction.atomic():
        revoked = Token.objects.filter(user=user).delete()[0] > 0
        if revoked:
            events.token_revoked(actor, user)
    return revoked


def current_token(user: User) -> tuple[Token, dt.datetime] | None:
    """The token this user holds and its expiry (never shown: only that it exists)."""
    token = Token.objects.filter(user=user).first()
    return (token, token_expires_at(token)) if token is not None else None


# --- Sign-in lockouts (django-axes) ---------------------------------------------------
#
# Failures are counted per pair (user name, address): someone guessing a colleague's password
# from elsewhere locks only their own pair, and colleagues behind one address are not locked by
# one guesser there. After LOGIN_FAILURE_LIMIT failures the pair is locked for
# LOGIN_LOCKOUT_MINUTES; each failure after a lockout has ended locks it again for twice as long
# as the last time, up to LOGIN_LOCKOUT_MAX_MINUTES. Tries while locked are refused unchecked
# and neither count nor extend the wait. A pair's failures are forgotten after a success, or
# LOGIN_FAILURE_MEMORY_HOURS after the last one.


@dataclass(frozen=True)
class PairStanding:
    failures: int
    last_failure: dt.datetime | None

    @property
    def locked_until(self) -> dt.datetime | None:
        delay = lockout_delay(self.failures)
        if delay is None or self.last_failure is None:
            return None
        return self.last_failure + delay

    def locked(self) -> bool:
        until = self.locked_until
        return until is not None and until > timezone.now()


def lockout_delay(failures: int) -> dt.timedelta | None:
    """None below the limit; at it the base wait, doubled for each failure since, capped."""
    limit = settings.AXES_FAILURE_LIMIT
    if failures < limit:
        return None
    cap = settings.LOGIN_LOCKOUT_MAX_MINUTES
    minutes = settings.LOGIN_LOCKOUT_MINUTES * 2 ** min(failures - limit, 32)
    return dt.timedelta(minutes=min(minutes, max(cap, settings.LOGIN_LOCKOUT_MINUTES)))


def pair_standing(username: str | None, address: str | None) -> PairStanding:
    """The failures remembered for one (user name, address) pair, over every user agent."""
    since = timezone.now() - dt.timedelta(hours=settings.LOGIN_FAILURE_MEMORY_HOURS)
    rows = AccessAttempt.objects.filter(
        username=username, ip_address=address, attempt_time__gt=since
    )
    figures = rows.aggregate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
    return PairStanding(figures["failures"] or 0, figures["last"])


def _standing_of(request: HttpRequest, credentials: Any = None) -> PairStanding:
    username = get_client_username(request, credentials)
    return pair_standing(username, getattr(request, "axes_ip_address", None))


class PairLockoutHandler(AxesDatabaseHandler):
    """axes' database handler, deciding a lockout from the pair's failures and its growing wait
    instead of a fixed window (``AXES_HANDLER``)."""

    def get_failures(self, request: HttpRequest, credentials: Any = None) -> int:
        """The pair's failures while they count against it: below the limit, or while locked.
        Once a lockout is over they count nothing, until the next failure locks it again."""
        standing = _standing_of(request, credentials)
        if standing.failures < settings.AXES_FAILURE_LIMIT or standing.locked():
            return standing.failures
        return 0

    def clean_expired_user_attempts(
        self, request: HttpRequest | None = None, credentials: Any = None
    ) -> int:
        """Forget failures after the memory window, never at one pair's wait: axes would
        clear every pair's record at the wait of whichever pair is signing in."""
        since = timezone.now() - dt.timedelta(hours=settings.LOGIN_FAILURE_MEMORY_HOURS)
        return AccessAttempt.objects.filter(attempt_time__lte=since).delete()[0]


def lockout_cool_off(request: HttpRequest | None = None) -> dt.timedelta:
    """``AXES_COOLOFF_TIME``: the current wait of this request's pair (the base wait without
    one), for anything in axes that asks."""
    if request is not None:
        delay = lockout_delay(
            _standing_of(request, getattr(request, "axes_credentials", None)).failures
        )
        if delay is not None:
            return delay
    return dt.timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES)


class LoginThrottleBackend(AxesStandaloneBackend):
    """Refuses a sign-in while its (user name, address) pair is locked out.

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
    """Audit the failure that locked the pair, once per lockout: tries refused while it is
    locked are not counted (axes leaves ``axes_failures_since_start`` unset for them) and are
    audited as failed logins already."""
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is not None and failures >= settings.AXES_FAILURE_LIMIT:
        events.login_locked_out(username or "", ip_address or "", failures)


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """The page a locked-out sign-in gets (429), in the site's layout, with the wait left."""
    until = _standing_of(request, credentials).locked_until
    seconds = (until - timezone.now()).total_seconds() if until else 0
    minutes = max(1, math.ceil(seconds / 60)) if until else None
    return render(request, "registration/locked_out.html", {"minutes": minutes}, status=429)


def locked_until(attempt: AccessAttempt) -> dt.datetime | None:
    """When the pair of this recorded attempt may sign in again, if it is locked now."""
    standing = pair_standing(attempt.username, attempt.ip_address)
    return standing.locked_until if standing.locked() else None


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


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted_proxy(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(
        address in ipaddress.ip_network(net, strict=False) for net in settings.TRUSTED_PROXIES
    )


def client_address(request: HttpRequest) -> str | None:
    """The address a sign-in is locked by (``AXES_CLIENT_IP_CALLABLE``): the connection's own,
    unless it is one of ``TRUSTED_PROXIES``; then the first address in ``X-Forwarded-For``,
    read from the right, that is not one of them. A client writes what it likes on the left
    of that header; each proxy of ours appends the address it saw."""
    remote = _ip(request.META.get("REMOTE_ADDR", ""))
    if remote is None:
        return None
    seen = remote
    if _trusted_proxy(remote):
        hops = [h for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
        for hop in reversed(hops):
            address = _ip(hop)
            if address is None:
                break
            seen = address
            if not _trusted_proxy(address):
                break
    return str(seen)
