from django.http import HttpRequest

from .choices import Role
from .roles import roles_of


def roles(request: HttpRequest) -> dict[str, bool]:
    """Which navigation a page shows; access itself is checked in each view."""
    held = roles_of(request.user)
    return {
        "is_radiologist": Role.RADIOLOGIST in held,
        "is_reader": bool({Role.RADIOLOGIST, Role.ARBITRATOR} & held),
        "is_admin": Role.ADMIN in held,
        "is_auditor": Role.AUDITOR in held,
    }
