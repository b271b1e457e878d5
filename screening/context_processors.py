from typing import Any

from django.http import HttpRequest

from .accounts import token_offer
from .choices import Role
from .roles import pending_roles_of, roles_of


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
