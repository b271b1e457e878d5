import datetime as dt
from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from .accounts import token_offer
from .choices import Role
from .models import DriftAlert
from .roles import has_role, pending_roles_of, roles_of


def account_notices(request: HttpRequest) -> dict[str, Any]:
    """What an admin set in motion for this user that they must know of: a token issued for
    them, a role waiting for a second admin. Shown on every page until settled."""
    return {
        "pending_roles": pending_roles_of(request.user),
        "token_offer": token_offer(request.user),
    }


def roles(request: HttpRequest) -> dict[str, bool]:
    """Which navigation a page shows; access itself is checked in each view."""
    held = roles_of(request.user)
    return {
        "is_radiologist": Role.RADIOLOGIST in held,
        "is_reader": bool({Role.RADIOLOGIST, Role.ARBITRATOR} & held),
        "is_admin": Role.ADMIN in held,
        "is_auditor": Role.AUDITOR in held,
    }


# How long a drift alert flags the auditor's navigation after it was raised.
DRIFT_ALERT_DAYS = 28


def drift_alerts(request: HttpRequest) -> dict[str, int]:
    """Drift alerts raised in the last four weeks, flagged on every page an auditor opens
    (one indexed count, for auditors only), so nobody has to visit the drift page to know."""
    if not has_role(request.user, Role.AUDITOR):
        return {"drift_alerts": 0}
    since = timezone.now() - dt.timedelta(days=DRIFT_ALERT_DAYS)
    return {"drift_alerts": DriftAlert.objects.filter(created_at__gte=since).count()}
